"""The whole pipeline at toy size (CI acceptance): collect 2 MuJoCo episodes, train the encoder
(V-JEPA) and then the predictor (paper losses) a few steps each on the ``tiny`` preset through
the real training entry point, load the result and plan + step a short ``reach`` episode."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

import sim
import world_model
from jepa_mpc.collect import collect
from planner import Planner
from robots.franka import SafetyFilter
from world_model.train import main as train_main


def losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_collect_train_plan_at_toy_size(tmp_path) -> None:
    data = tmp_path / "data"
    summary = collect(data, ["reach"], 2, workers=1, progress=False, image_size=64, steps=6)
    assert summary["episodes"] == 2
    encoder_run, predictor_run = tmp_path / "encoder", tmp_path / "predictor"
    common = [f"--data={data}", "batch_size=2", "checkpoint_every=100", "data.num_workers=0"]
    assert (
        train_main(["encoder", "--config=encoder_tiny", f"--out={encoder_run}", "steps=2"] + common)
        == 0
    )
    assert (
        train_main(
            [
                "predictor",
                "--config=predictor_tiny",
                f"--out={predictor_run}",
                f"--init={encoder_run / 'model'}",
                "steps=3",
            ]
            + common
        )
        == 0
    )
    for run, steps in ((encoder_run, 2), (predictor_run, 3)):
        values = losses(run)
        assert len(values) == steps and all(math.isfinite(v) and v > 0 for v in values)

    model = world_model.load(predictor_run / "model")
    trained_encoder = world_model.load(encoder_run / "model").encoder.state_dict()
    torch.testing.assert_close(model.encoder.state_dict(), trained_encoder)  # kept frozen
    fresh = world_model.build("tiny", seed=0).encoder.state_dict()
    assert any(not torch.equal(trained_encoder[k], fresh[k]) for k in fresh)  # encoder trained

    overrides = ["actor.samples=8", "actor.iterations=2", "actor.elites=2"]
    planner = Planner.from_config("icem", model, "cpu", overrides)
    env = sim.make("reach", image_size=64, seed=7)
    try:
        obs, _ = env.reset(seed=7)
        goal, start = env.unwrapped.goal(), obs["state"].copy()
        for _ in range(3):
            plan = planner.plan(obs, goal)
            assert plan.action.shape == (7,) and np.all(np.isfinite(plan.action))
            assert math.isfinite(plan.energy) and plan.evaluations > 0
            safe = SafetyFilter(None)(torch.from_numpy(obs["state"]), torch.from_numpy(plan.action))
            np.testing.assert_allclose(safe.numpy(), plan.action, atol=1e-6)  # within limits
            obs, _, _, _, info = env.step(plan.action)
            assert math.isfinite(info["distance"])
    finally:
        env.close()
    assert np.linalg.norm(obs["state"][:3] - start[:3]) > 1e-3  # the arm moved
