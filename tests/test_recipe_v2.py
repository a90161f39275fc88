"""The one-command v2 recipe (scripts/sim_small_v2.py): its collect stage tops a dataset up in
the training seed range and resumes where the folder stops; bad stages are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim.tasks import TRAINING_SEEDS_START

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sim_small_v2.py"


def recipe(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_collect_stage_tops_up_in_the_training_range_and_skips_when_full(tmp_path) -> None:
    work = tmp_path / "v2"
    first = recipe("--work", str(work), "--stages", "collect", "--episodes", "1", "--workers", "1")
    assert first.returncode == 0, first.stderr
    meta = json.loads((work / "data" / "meta.json").read_text())
    assert len(meta["episodes"]) == 1
    assert meta["info"]["seeds"] == [TRAINING_SEEDS_START, TRAINING_SEEDS_START]
    again = recipe("--work", str(work), "--stages", "collect", "--episodes", "1")
    assert again.returncode == 0 and "skipped" in again.stdout


def test_unknown_stage_is_refused_in_one_line(tmp_path) -> None:
    result = recipe("--work", str(tmp_path), "--stages", "collect,deploy")
    assert result.returncode == 2
    assert "unknown stage(s) deploy" in result.stderr.strip().splitlines()[-1]
