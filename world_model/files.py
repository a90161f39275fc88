"""Atomic file output, the one way every package writes results: a temp file beside the target,
then a rename, so a reader (or a crash) sees the old file or the new one, never a part.

Lives in ``world_model``, the lowest layer that writes files (checkpoints, datasets, training
logs); ``planner``, ``sim``'s applications, ``ros_ws`` and the scripts use it from here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT_MODE = 0o644  # what open() gives under the usual umask; mkstemp's 0o600 would hide results


def atomic_write(
    path: str | Path,
    write: Callable[[Path], None],
    *,
    temp_prefix: str | None = None,
    temp_suffix: str | None = None,
    durable: bool = False,
) -> Path:
    """Call ``write(temp)`` on a fresh temp file beside ``path``, then rename it onto ``path``.

    Args:
        path: the file to (re)place; its folder is created if missing.
        write: writes the whole content to the temp path it is given (it may open it in any
            mode, or hand it to a library: ``torch.save``, ``figure.savefig``, imageio).
        temp_prefix, temp_suffix: the temp file's name around its random part (default
            ``.<name>.`` and ``path``'s suffix, so that writers choosing a format by extension
            work); give them where a clean-up finds partial files by name.
        durable: fsync the file before the rename and the folder after it (checkpoints and
            datasets: a power cut cannot undo a finished write).

    Returns:
        ``path``. If ``write`` raises, the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}." if temp_prefix is None else temp_prefix
    suffix = path.suffix if temp_suffix is None else temp_suffix
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(handle)
    temp = Path(name)
    try:
        write(temp)
        os.chmod(temp, RESULT_MODE)
        if durable:
            fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)
    return path


def write_text(path: str | Path, text: str, **options: Any) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; ``options`` as for
    ``atomic_write``."""

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    return atomic_write(path, write, **options)


def write_bytes(path: str | Path, data: bytes, **options: Any) -> Path:
    """Write ``data`` to ``path`` atomically; ``options`` as for ``atomic_write``."""
    return atomic_write(path, lambda temp: temp.write_bytes(data), **options)


def write_json(path: str | Path, data: Any, indent: int = 2, **options: Any) -> Path:
    """Write ``data`` as indented JSON (and a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", **options)


def save_figure(figure: Any, path: str | Path, dpi: int = 100, **options: Any) -> Path:
    """Save a matplotlib ``figure`` to ``path`` atomically (format from the suffix), then close
    it; ``options`` as for ``atomic_write``."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    try:
        return atomic_write(
            path, lambda temp: figure.savefig(temp, format=suffix, dpi=dpi), **options
        )
    finally:
        pyplot().close(figure)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a platform that cannot open folders skips it: the
    rename is still atomic)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
