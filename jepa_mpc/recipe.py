"""Steps shared by the one-command recipes in ``scripts/`` (``sim_small_v2.py``,
``subgoals_dagger.py``, ``keypoint_dagger.py``): each stage is a ``jepa-mpc`` command run in a
child process, and a stage whose output is complete is skipped on a rerun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "jepa_mpc.cli"]  # ``jepa-mpc`` in this interpreter


def run(command: list[str]) -> None:
    """Run one CLI step, echoing it; a failing step stops the recipe with its exit status."""
    print("+ " + " ".join(command), flush=True)
    status = subprocess.call(command)
    if status != 0:
        raise SystemExit(status)


def episodes_in(data: Path) -> int:
    """Episodes already in the dataset folder (0 if there is none yet)."""
    meta = data / "meta.json"
    if not meta.is_file():
        return 0
    return len(json.loads(meta.read_text())["episodes"])
