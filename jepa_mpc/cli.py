"""The ``jepa-mpc`` console script: one dispatcher over the sub-commands (each module exposes
``main(argv) -> int``): the applications of this package, and the training, conversion and
benchmark tools that live in the library packages that own them.

Whatever a sub-command lets through, the user sees one line, never a traceback: a bad input
(unknown name, missing file, absent device) is "jepa-mpc <command>: error: ..." and exit status
2; Ctrl-C is exit status 130; a closed pipe (``jepa-mpc ... | head``) ends quietly.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import TextIO

# command -> (module whose main(argv) runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "jepa_mpc.demo",
        "one reach episode in MuJoCo planned with the embedded sim-small model (CPU: minutes)",
    ),
    "render": ("jepa_mpc.render", "render reset/goal/subgoal frames of a task to PNG files"),
    "bench": (
        "jepa_mpc.bench",
        "headless planning benchmark: tasks x planners x models, with baselines",
    ),
    "bench-merge": ("jepa_mpc.bench_merge", "merge bench shards run on consecutive seed ranges"),
    "bench-env": ("jepa_mpc.bench_env", "env steps/s and renders/s per backend and image size"),
    "convert-checkpoint": (
        "world_model.convert",
        "official V-JEPA 2-AC .pt -> safetensors + config folder",
    ),
    "bench-model": ("world_model.bench", "time one predictor rollout (FLOPs, % of peak)"),
    "bench-planner": ("planner.bench", "per-action planning time and energy for each actor"),
    "collect": ("jepa_mpc.collect", "record expert and random-walk trajectories for training"),
    "train": (
        "world_model.train",
        "train predictor|encoder|readout|joint|policy: the action-conditioned predictor, the "
        "encoder, a state readout head, both end to end, or the planner's proposal policy",
    ),
    "soak": ("jepa_mpc.soak", "long planning run in sim: resident memory growth and latency drift"),
    "presets": ("jepa_mpc.presets", "list the presets in configs/ (per group) and their keys"),
}


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "the request cannot run as asked" (each names what to fix), not a bug
    (imported when needed: ``jepa-mpc --help`` does not wait for torch)."""
    from robots.config import ConfigError
    from world_model.data.errors import DatasetError
    from world_model.errors import WorldModelError

    return (WorldModelError, ConfigError, DatasetError, OSError)


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: jepa-mpc <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'jepa-mpc <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        known = ", ".join(COMMANDS)
        print(f"jepa-mpc: unknown command {command!r}; commands: {known}", file=sys.stderr)
        return 2
    warnings.showwarning = show_warning
    name = COMMANDS[command][0]
    if command == "train" and rest[:1] == ["policy"]:  # the planner's proposal, not a model stage
        name, rest = "planner.policy_train", rest[1:]
    try:
        module = importlib.import_module(name)
        code = int(module.main(rest) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:
        print(f"\njepa-mpc {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        print(f"jepa-mpc {command}: error: {error}", file=sys.stderr)
        return 2


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for a command-line user: "warning: <message>" on a line of its
    own (above any progress bar), without the source line."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr if file is None else file)


def _closed_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as ``cat`` does. Python would
    report the failed flush of stdout at exit; point stdout at /dev/null first."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a process killed by it


if __name__ == "__main__":
    sys.exit(main())
