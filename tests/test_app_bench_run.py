"""``jepa-mpc bench`` as a user runs it: a progress bar, the camera at the models' own size, and
Ctrl-C / SIGTERM that stop the run and write the episodes it finished (a real process, a real
signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import world_model
from jepa_mpc import bench, bench_merge
from jepa_mpc.bench_config import BenchConfig, BenchError, Method

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_and_writes_the_finished_episodes(tmp_path, number, code, capsys):
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "jepa_mpc", "bench", "--tasks", "reach", "--planners"]
    command += ["none", "--models", "none", "--baselines", "random", "--episodes", "5000"]
    command += ["--steps", "3", "--image-size", "32", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = []
        for line in process.stdout:  # wait for two finished episodes, then send the signal
            lines.append(line)
            if "episode 2/5000" in line:
                break
        process.send_signal(number)
        rest, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, errors[-2000:]
    assert "Traceback" not in errors and "ETA" in errors  # the progress bar, no traceback
    results = json.loads((out / "results.json").read_text())
    finished = len(results["episodes"])
    assert results["interrupted"] == {"signal": signal.Signals(number).name, "exit_code": code}
    assert 2 <= finished < 5000 and results["rows"][0]["episodes"] == finished
    assert f"stopped after {finished} finished episode(s)" in rest
    assert "**Interrupted" in (out / "results.md").read_text()
    # a stopped run is not a shard to merge
    assert bench_merge.main([str(out), str(out), "--out", str(tmp_path / "merged")]) == 2
    assert "rerun that shard" in capsys.readouterr().err


def test_the_camera_takes_the_image_models_size_unless_told(tmp_path):
    tiny = Method("icem@tiny", "tiny", "icem", None, world_model.build("tiny", seed=0))
    state = Method("icem@state", "state", "icem", None, world_model.resolve_model("state"))
    assert bench.image_size_for(BenchConfig(), [Method("random"), state]) == 256
    assert bench.image_size_for(BenchConfig(), [state, tiny]) == tiny.world_model.config.img_size
    assert bench.image_size_for(BenchConfig(image_size=96), [tiny]) == 96
    other = world_model.build("tiny", seed=0)
    other.config.img_size = 128
    with pytest.raises(BenchError, match=r"\(tiny 64 px, other 128 px\): give --image-size"):
        bench.image_size_for(
            BenchConfig(), [tiny, Method("icem@other", "other", "icem", None, other)]
        )


def test_help_is_whole_sentences_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "writes the episodes it finished." in text
    assert "(default: reach)" in text and "(default: cem_paper)" in text
    assert "GPU-sized" in text
