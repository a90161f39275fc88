"""scripts/probe_gripper.py: the gripper diagnostic measures what its doc says."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import sim
import world_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("probe_gripper", REPO / "scripts/probe_gripper.py")
probe_gripper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_gripper)


def test_a_copy_predictor_captures_none_of_the_closure() -> None:
    # An untrained residual predictor starts as "nothing changes": its prediction is the open
    # latent itself, so it removes exactly none of the open->closed energy.
    model = world_model.build("small-residual", seed=0).eval()
    env = sim.make("grasp", image_size=model.config.img_size)
    try:
        row = probe_gripper.probe_scene(env, model, seed=0, top_tokens=4)
        physics = probe_gripper.probe_close_step(env, model, seed=10_000)
    finally:
        env.close()
    assert row["encoder_open_closed"] > 0 and row["encoder_1cm"] > 0
    assert 0 < row["fingers_share"] <= 1
    for key in ("fingers_close", "fingers_hold", "rest_close", "rest_hold"):
        assert row[key] == pytest.approx(0.0, abs=1e-5), key
    assert physics["physics_captured_close"] == pytest.approx(0.0, abs=1e-5)
    assert physics["physics_captured_hold"] == pytest.approx(0.0, abs=1e-5)
    assert row["captured_close"] == pytest.approx(0.0, abs=1e-6)
    assert row["captured_hold"] == pytest.approx(0.0, abs=1e-6)
    assert row["captured_move"] == pytest.approx(0.0, abs=1e-6)


def test_cli_writes_json_and_rejects_no_scenes(tmp_path: Path, capsys) -> None:
    assert probe_gripper.main(["--scenes", "0"]) == 2
    assert probe_gripper.main(["--top-tokens", "-1"]) == 2
    out = tmp_path / "probe.json"
    assert probe_gripper.main(["--scenes", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "sim-small" and len(report["rows"]) == 1
    assert "closure captured" in capsys.readouterr().out


def test_split_figures_find_the_tokens_that_change() -> None:
    z_open = torch.zeros(6, 4)
    z_closed = z_open.clone()
    z_closed[2] = 1.0  # one "finger" token carries the whole closure
    close = z_open.clone()
    close[2] = 0.5  # halfway there on the finger, exact elsewhere
    figures = probe_gripper.split_figures(z_open, z_closed, close, z_open, top=1)
    assert figures["fingers_share"] == pytest.approx(1.0)
    assert figures["fingers_close"] == pytest.approx(0.5)
    assert figures["fingers_hold"] == pytest.approx(0.0)
    assert math.isnan(figures["rest_close"])  # nothing to capture where nothing changes
