"""``jepa-mpc demo``: a 2-step reach episode with a tiny random model saved to a temp folder
(outputs written and well formed), and clear errors for bad arguments or a missing model."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import pytest

import world_model
from jepa_mpc.demo import main

SMALL_PLANNER = [
    "--override",
    "actor.samples=8",
    "--override",
    "actor.iterations=2",
    "--override",
    "actor.elites=2",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    world_model.save(world_model.build("tiny", seed=0), folder)
    return folder


def test_demo_runs_two_steps_and_writes_outputs(tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["--model", str(tiny_model), "--steps", "2", "--seed", "3", "--out", str(out)]
    assert main(argv + SMALL_PLANNER) == 0
    printed = capsys.readouterr().out
    assert "step   2/2" in printed and "energy" in printed and "distance" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and len(summary["energy"]) == 3 and len(summary["distance"]) == 3
    assert all(len(action) == 7 for action in summary["actions"])
    frames = imageio.mimread(out / "episode.gif")
    assert len(frames) == 3
    assert frames[0].shape[1] == 2 * 64 + 4  # episode frame | gap | goal image
    assert (out / "energy_distance.png").stat().st_size > 2000
    assert not [p for p in out.iterdir() if p.name.startswith("tmp")]  # no temp leftovers


def test_missing_model_says_how_to_train_it(tmp_path, capsys) -> None:
    assert main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "not found" in error and "docs/sim_small.md" in error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "--steps"),
        (["--seed", "-1"], "--seed"),
        (["--planner", "no_such_planner"], "no_such_planner"),
        (["--model", "state"], "the demo plans from camera images"),
    ],
)
def test_bad_arguments_give_clear_errors(tiny_model, tmp_path, capsys, argv, message) -> None:
    base = ["--model", str(tiny_model), "--out", str(tmp_path / "o")]
    assert main(base + argv) == 2  # a later --model wins
    assert not (tmp_path / "o").exists()
    assert message in capsys.readouterr().err
