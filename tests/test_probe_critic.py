"""scripts/probe_critic.py: the critic diagnostic runs on a model with a critic, reports
figures in their ranges, and refuses a model without one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import world_model

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("probe_critic", REPO / "scripts/probe_critic.py")
probe_critic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_critic)


def test_probe_reports_ranks_and_correlations_and_refuses_a_model_without_critic(
    tmp_path: Path, capsys
) -> None:
    model = world_model.build("tiny", seed=0)
    world_model.save(model, tmp_path / "plain")
    args = ["--tasks", "reach", "--episodes", "1", "--every", "10", "--image-size", "64"]
    assert probe_critic.main(["--model", str(tmp_path / "plain"), *args]) == 2
    assert "has no critic" in capsys.readouterr().err
    model.add_critic(hidden=16)
    world_model.save(model, tmp_path / "critic")
    out = tmp_path / "probe.json"
    command = ["--model", str(tmp_path / "critic"), *args, "--weights", "0.01,0.1"]
    assert probe_critic.main([*command, "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]["reach"]
    assert row["seed"] == 10_000 and row["critic_start"] >= 0 and row["critic_end"] >= 0
    for name in ("critic", "energy", "energy+0.01critic", "energy+0.1critic"):
        assert 0.0 <= row[f"beaten_by_random_{name}"] <= 1.0
    assert -1.0 <= row["spearman_critic"] <= 1.0 and -1.0 <= row["spearman_energy"] <= 1.0
