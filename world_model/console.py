"""What every command-line tool of the project shares (``jepa-mpc <command>``, the ROS bringup):
an argument parser that shows defaults and reports a bad option in one line, the ``--device``
option resolved in one line and progress bars with an ETA.

Lives in ``world_model``, the lowest layer with a command-line tool (``train``, ``bench-model``);
``planner``, the app layer ``jepa_mpc`` and ``ros_ws`` use it from here.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

import torch
from tqdm import tqdm

from world_model.devices import resolve_device

# tqdm's default bar with the estimated time left spelled out: "... [00:12<03:40, 1.2 step/s]"
BAR_FORMAT = (
    "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed, ETA {remaining}, {rate_fmt}{postfix}]"
)


def plain(text: str | None) -> str:
    """A docstring as help text: reST literals (````name````) and literal-block markers
    ("Examples::") without their markup."""
    text = re.sub(r"``([^`]+)``", r"\1", text or "")
    return re.sub(r"::$", ":", text, flags=re.M)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written (examples stay on their lines); every option that has a
    default worth saying ends its help with "(default: ...)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default == []
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class CommandLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr and exit status 2
    ("jepa-mpc demo: error: argument --steps: invalid int value: 'x' (see --help)"), with
    ``HelpFormatter`` and the description's reST markup removed."""

    def __init__(self, prog: str, description: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(prog=prog, description=plain(description), **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print one line and exit 2 (argparse's usage block is what ``--help`` is for)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def device_option(spec: str, option: str = "--device") -> torch.device:
    """The device a command-line ``option`` names; DeviceError (one line: "no CUDA device (...):
    use --device cpu") when this machine lacks it."""
    return resolve_device(spec, option=option)


def progress_bar(total: int, desc: str, unit: str, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr with the elapsed time and an ETA, redrawn at most twice a second;
    ``bar.write(line)`` prints a line above it."""
    options = {"mininterval": 0.5, "dynamic_ncols": True, "bar_format": BAR_FORMAT, **kwargs}
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, **options)
