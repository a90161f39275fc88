"""Every command-line tool, asked for what this machine or project lacks (a CUDA device on a CPU
machine, an unknown task, planner preset or checkpoint), answers with exit status 2 and one line
on stderr, no traceback and nothing written. Help texts show defaults and no reST markup; a
closed pipe ends a command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa_mpc import cli

REPO = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
STATE_BENCH = ["bench", "--tasks", "reach", "--planners", "icem", "--models", "state"]
TRAIN = ["train", "predictor", "--config", "predictor_tiny", "--data", "/nonexistent"]

CASES = {
    # --device cuda on a machine without one
    "demo cuda": (["demo", "--device", "cuda"], "no CUDA device", NO_GPU),
    "bench cuda": ([*STATE_BENCH, "--device", "cuda"], "no CUDA device", NO_GPU),
    "bench-model cuda": (["bench-model", "--device", "cuda"], "no CUDA device", NO_GPU),
    "bench-planner cuda": (["bench-planner", "--device", "cuda"], "no CUDA device", NO_GPU),
    "train cuda": ([*TRAIN, "--device", "cuda"], "no CUDA device", NO_GPU),
    "soak cuda": (["soak", "--device", "cuda"], "no CUDA device", NO_GPU),
    # an unknown task
    "bench task": (["bench", "--tasks", "fly"], "unknown task(s) ['fly']", None),
    "render task": (["render", "--task", "fly"], "invalid choice: 'fly'", None),
    "collect task": (["collect", "--task", "fly"], "unknown task 'fly'", None),
    "soak task": (["soak", "--task", "fly", "--model", "state"], "'fly'", None),
    # an unknown planner preset
    "demo planner": (["demo", "--planner", "nope"], "no planner config named 'nope'", None),
    "bench planner": (["bench", "--planners", "nope"], "no planner config named 'nope'", None),
    "bench-planner actor": (["bench-planner", "--actors", "nope"], "named 'nope'", None),
    "soak planner": (["soak", "--planner", "nope"], "no planner config named 'nope'", None),
    # a checkpoint (or model) that is not there
    "demo model": (["demo", "--model", "nope"], "no checkpoint at 'nope'", None),
    "bench model": (["bench", "--models", "nope"], "no checkpoint at 'nope'", None),
    "bench-planner model": (["bench-planner", "--model", "small"], "write random:small", None),
    "bench-model preset": (["bench-model", "--preset", "nope"], "no model config named", None),
    "soak model": (["soak", "--model", "nope"], "no checkpoint at 'nope'", None),
    "train init": ([*TRAIN, "--init", "nope"], "no checkpoint at 'nope'", None),
    "convert": (["convert-checkpoint", "nope.pt", "converted"], "no checkpoint at", None),
    # the dispatcher itself
    "command": (["fly"], "jepa-mpc: unknown command 'fly'; commands: demo, render", None),
}


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(argv, words, marks=[mark] if mark else [], id=name)
        for name, (argv, words, mark) in CASES.items()
    ],
)
def test_bad_requests_exit_2_with_one_line(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # whatever a command would write lands here
    argv = [*argv, "--out", str(tmp_path / "out")] if argv[0] in ("demo", "bench") else argv
    argv = [*argv, "--out", str(tmp_path / "out")] if argv[0] in ("render", "collect") else argv
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert words in line and line.startswith("jepa-mpc")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(["--device", "cuda"], "no CUDA device", marks=NO_GPU, id="device"),
        pytest.param(["--task", "fly"], "unknown task 'fly'", id="task"),
        pytest.param(["--planner", "nope"], "no planner config named 'nope'", id="planner"),
        pytest.param(["--checkpoint", "nope"], "no checkpoint at 'nope'", id="checkpoint"),
        pytest.param(["--seed", "x"], "invalid int value: 'x'", id="option"),
    ],
)
def test_bringup_refuses_bad_options_in_one_line_before_any_node_starts(argv, words, capsys):
    pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
    from planner_ros import bringup

    try:
        code = bringup.run([*argv, "--duration", "1"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    captured = capsys.readouterr()
    assert words in one_line(captured.err) and captured.out == ""  # no node logged


@NO_GPU
def test_a_real_process_says_one_line_for_a_missing_gpu(tmp_path):
    """The console path end to end (python -m jepa_mpc), as a user's shell sees it."""
    command = [sys.executable, "-m", "jepa_mpc", "demo", "--device", "cuda"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr == (
        "jepa-mpc demo: error: no CUDA device (torch was built without CUDA): use --device cpu\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_closed_pipe_ends_a_command_quietly(tmp_path):
    """``jepa-mpc presets planner | head -0``: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, "-m", "jepa_mpc", "presets", "planner"]
    try:
        run = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert run.stderr == "" and run.returncode == 141


def test_top_level_help_lists_every_command_and_training_stage(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "train predictor|encoder|readout|joint" in text
    for command in cli.COMMANDS:
        assert f"\n  {command} " in text


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_command_help_shows_defaults_without_markup(command, capsys):
    argv = [command, "predictor", "--help"] if command == "train" else [command, "--help"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: jepa-mpc {command}")
    assert "``" not in text and ":class:" not in text and "::\n" not in text
    if command not in ("bench-merge", "convert-checkpoint", "presets", "train"):  # none to show
        assert "(default: " in text


def test_warnings_reach_a_command_line_user_as_one_line(tmp_path):
    """A resize said by the planner during ``jepa-mpc bench`` is "warning: ..." on one line."""
    argv = ["bench", "--tasks", "reach", "--planners", "icem", "--models", "random:tiny"]
    argv += ["--baselines", "none", "--episodes", "1", "--steps", "1", "--image-size", "32"]
    argv += ["--device", "cpu", "--out", str(tmp_path / "b"), "actor.samples=4"]
    argv += ["actor.iterations=1", "actor.elites=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "jepa_mpc", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if "warning" in line.lower()]
    assert lines == [
        "warning: the camera image is 32x32 and the world model takes 64x64: each image is "
        "resized (2x up) on every plan; capture or render at 64 px (sim.make(..., "
        "image_size=64))"
    ]
