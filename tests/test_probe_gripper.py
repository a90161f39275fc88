"""scripts/probe_gripper.py: the gripper diagnostic measures what its doc says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
        row = probe_gripper.probe_scene(env, model, seed=0)
    finally:
        env.close()
    assert row["encoder_open_closed"] > 0 and row["encoder_1cm"] > 0
    assert row["captured_close"] == pytest.approx(0.0, abs=1e-6)
    assert row["captured_hold"] == pytest.approx(0.0, abs=1e-6)
    assert row["captured_move"] == pytest.approx(0.0, abs=1e-6)


def test_cli_writes_json_and_rejects_no_scenes(tmp_path: Path, capsys) -> None:
    assert probe_gripper.main(["--scenes", "0"]) == 2
    out = tmp_path / "probe.json"
    assert probe_gripper.main(["--scenes", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "sim-small" and len(report["rows"]) == 1
    assert "closure captured" in capsys.readouterr().out
