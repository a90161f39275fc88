"""``jepa-mpc demo``: a 2-step reach episode with a tiny random model saved to a temp folder
(outputs written and well formed, the target marked, panels and plot labelled), and clear
one-line errors for bad arguments, a missing model or device and an unwritable output folder."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import sim
import world_model
from jepa_mpc.demo import main
from jepa_mpc.demo_media import (
    CAPTION_HEIGHT,
    TARGET_RGB,
    energy_figure,
    labelled_panel,
    target_in_image,
)

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
    printed = capsys.readouterr()
    assert "step   2/2" in printed.out and "energy" in printed.out and "distance" in printed.out
    assert "demo reach: 100%" in printed.err and "ETA" in printed.err  # the progress bar
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and len(summary["energy"]) == 3 and len(summary["distance"]) == 3
    assert all(len(action) == 7 for action in summary["actions"])
    frames = imageio.mimread(out / "episode.gif")
    assert len(frames) == 3
    # camera | view from above | goal image, each 64 px enlarged 4x under a caption strip
    assert frames[0].shape[:2] == (CAPTION_HEIGHT + 256, 3 * 256 + 2 * 4)
    assert (out / "energy_distance.png").stat().st_size > 2000
    assert not [p for p in out.iterdir() if p.name.startswith((".", "tmp"))]  # no leftovers
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {"0o644"}


def test_the_bundled_model_plans_with_fast_and_others_with_icem(tiny_model, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    assert "model sim-small, planner fast (preset as is)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and np.isfinite(summary["energy"]).all()
    assert main(["--model", str(tiny_model), "--steps", "1", "--out", str(out)]) == 0
    assert "planner icem (actor.samples=64 actor.iterations=6" in capsys.readouterr().out


def test_the_target_is_marked_where_the_camera_sees_the_goal_position(tmp_path) -> None:
    """The projection puts the cube's centre on red cube pixels; the ring is drawn there."""
    env = sim.make("reach", image_size=64, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        cube = env.unwrapped.backend.cube_pose()[:3]
    finally:
        env.close()
    column, row = target_in_image(cube, 64)
    red, green, blue = obs["image"][int(row), int(column)].astype(int)
    assert red > 120 and green < 80 and blue < 80  # the cube is red
    panel = labelled_panel(obs["image"], "camera", (column, row))
    assert panel.shape == (CAPTION_HEIGHT + 256, 256, 3)
    ring = np.all(panel == TARGET_RGB, axis=-1)
    rows, columns = np.nonzero(ring)
    assert ring.sum() > 50
    assert abs(rows.mean() - (CAPTION_HEIGHT + 4 * row)) < 4  # centred on the target
    assert abs(columns.mean() - 4 * column) < 4
    assert panel[:CAPTION_HEIGHT].max() == 255  # white caption text on the dark strip
    assert not np.any(np.all(labelled_panel(obs["image"], "goal", None) == TARGET_RGB, axis=-1))


def test_the_energy_plot_has_a_title_a_legend_and_a_labelled_threshold() -> None:
    figure = energy_figure([0.1, 0.05, 0.03], [0.2, 0.1, 0.01], 0.03, "reach, seed 0")
    left = figure.axes[0]
    assert left.get_title() == "reach, seed 0"
    labels = [text.get_text() for text in left.get_legend().get_texts()]
    assert labels == [
        "energy (L1 to goal latent)",
        "TCP distance to target",
        "success threshold (3 cm)",
    ]
    assert left.get_xlabel() == "control step" and figure.axes[1].get_ylabel()


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
    printed = capsys.readouterr()
    assert message in printed.err and len(printed.err.splitlines()) == 1


@pytest.mark.parametrize("out", ["/proc/nope", "/dev/null/demo"])
def test_an_unwritable_out_folder_fails_before_planning(tiny_model, capsys, out) -> None:
    assert main(["--model", str(tiny_model), "--out", out]) == 2
    printed = capsys.readouterr()
    assert printed.err.startswith(f"jepa-mpc demo: error: --out {out}: cannot write there (")
    assert len(printed.err.splitlines()) == 1 and "step" not in printed.out
