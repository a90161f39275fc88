"""The state readout head: training stage, checkpoints, errors, and the planner's goal-readout
energy term (which makes a planner close the gripper when the goal image shows it closed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from planner import Planner, load_planner_config
from planner.config import CostConfig
from planner.cost import Cost
from robots.config import ConfigError
from world_model import NoReadoutError
from world_model.data import TrajectoryWriter
from world_model.readout import STATE_CENTER, STATE_SCALE
from world_model.state_model import StateWorldModel
from world_model.train import load_train_config, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """6 episodes of 8 frames (64 px): a bright square whose column follows the hand's x."""
    root = tmp_path_factory.mktemp("readout_data")
    rng = np.random.default_rng(1)
    with TrajectoryWriter(root, episodes_per_chunk=3) as writer:
        for _ in range(6):
            states = np.zeros((8, 7), np.float32)
            states[:, 0] = rng.uniform(0.3, 0.65, size=8)
            states[:, 3] = np.pi
            frames = np.zeros((8, 64, 64, 3), np.uint8)
            for t, x in enumerate(((states[:, 0] - 0.3) * 160).astype(int)):
                frames[t, 20:36, x : x + 8] = 255
            writer.add_episode(frames, states, task="reach", success=True)
    return root


def test_readout_stage_trains_only_the_head_and_saves_it(data_dir, tmp_path) -> None:
    config = load_train_config(
        "readout_sim_small",
        [
            f"data.root={data_dir}",
            f"out={tmp_path / 'run'}",
            "model=tiny",
            "init=null",
            "batch_size=8",
            "steps=60",
            "log_every=10",
            "checkpoint_every=30",
            "optim.warmup_steps=5",
            "optim.decay_steps=20",
        ],
    )
    model_dir = train("readout", config)
    trained = world_model.load(model_dir)
    fresh = world_model.build("tiny", seed=0)
    assert trained.config.readout.enabled and trained.readout is not None
    for name, tensor in fresh.state_dict().items():  # encoder and predictor untouched
        assert torch.equal(trained.state_dict()[name], tensor), name
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    first, last = (
        dict(zip(header, line.split(","), strict=True)) for line in (lines[1], lines[-1])
    )
    assert float(last["loss"]) < 0.5 * float(first["loss"])
    assert float(last["gripper_mae"]) < float(first["gripper_mae"])


def test_read_state_needs_a_readout_and_checks_shapes() -> None:
    model = world_model.build("tiny", seed=0)
    latents = torch.zeros(2, model.num_patches, model.latent_dim)
    with pytest.raises(NoReadoutError, match="train readout"):
        model.read_state(latents)
    model.add_readout()
    assert model.read_state(latents).shape == (2, 7)
    with pytest.raises(world_model.InputShapeError, match="latents must be"):
        model.read_state(latents[0])


def test_a_readout_survives_save_and_load_and_old_checkpoints_load_without_one(tmp_path) -> None:
    plain = world_model.build("tiny", seed=0)
    world_model.save(plain, tmp_path / "plain")
    assert world_model.load(tmp_path / "plain").readout is None
    plain.add_readout()
    world_model.save(plain, tmp_path / "with")
    loaded = world_model.load(tmp_path / "with")
    latents = torch.randn(3, plain.num_patches, plain.latent_dim)
    assert torch.equal(loaded.read_state(latents), plain.read_state(latents))


def constant_readout(model, state: list[float]) -> None:
    """Make ``model``'s readout read ``state`` off any latent (last layer: zero weight, bias)."""
    last = model.readout.head[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        target = (torch.tensor(state) - torch.tensor(STATE_CENTER)) / torch.tensor(STATE_SCALE)
        last.bias.copy_(target)


def test_the_readout_term_weighs_the_final_integrated_state_against_the_goal() -> None:
    cost = Cost(CostConfig(goal_weight=0.0, readout_weights=[0, 0, 0, 1.0, 0, 0, 2.0]))
    start = torch.tensor([[0.5, 0.0, 0.2, 3.1, 0.0, 0.0, 0.0]])
    goal = torch.tensor([[0.5, 0.0, 0.2, -3.1, 0.0, 0.0, 0.4]])
    actions = torch.zeros(2, 3, 7)
    actions[1, :, 6] = 0.2  # closes to 0.6 (clipped integration), overshooting the goal by 0.2
    latents = torch.zeros(2, 3, 4, 8)
    energy = cost(latents, torch.zeros(1, 4, 8), actions, start, goal)
    # roll 3.1 vs -3.1 is 0.083 rad apart across the wrap, not 6.2
    wrap = 2 * np.pi - 6.2
    assert energy[0].item() == pytest.approx(wrap + 2.0 * 0.4, abs=1e-4)
    assert energy[1].item() == pytest.approx(wrap + 2.0 * 0.2, abs=1e-4)
    with pytest.raises(ValueError, match="no goal state"):
        cost(latents, torch.zeros(1, 4, 8), actions, start)


def test_readout_weights_are_checked_and_need_a_model_with_a_readout() -> None:
    with pytest.raises(ConfigError, match="readout_weights"):
        load_planner_config("icem", ["cost.readout_weights=[1, 2]"])
    with pytest.raises(ConfigError, match="readout_weights"):
        load_planner_config("icem", ["cost.readout_weights=[0, 0, 0, 0, 0, 0, -1]"])
    config = load_planner_config("icem", ["cost.readout_weights=[0, 0, 0, 0, 0, 0, 1]"])
    with pytest.raises(ConfigError, match="state readout"):
        Planner(config, world_model.build("tiny", seed=0), device="cpu")
    Planner(config, StateWorldModel(), device="cpu")  # its readout is exact


def test_the_ground_truth_state_model_reads_its_latents_back_exactly() -> None:
    model = StateWorldModel()
    states = torch.tensor(
        [[0.5, 0.1, 0.2, 3.1, 0.1, -0.2, 0.37], [0.4, -0.2, 0.05, -3.0, 0.0, 0.5, 0.0]]
    )
    assert torch.allclose(model.read_state(model.encode(None, states)), states, atol=1e-5)


@pytest.mark.parametrize("goal_gripper, sign", [(1.0, 1.0), (0.0, -1.0)])
def test_the_planner_moves_the_gripper_toward_the_goal_images_read_state(goal_gripper, sign):
    model = world_model.build("tiny", seed=0)
    model.add_readout()
    constant_readout(model, [0.5, 0.0, 0.2, np.pi, 0.0, 0.0, goal_gripper])
    overrides = [
        "cost.readout_weights=[0, 0, 0, 0, 0, 0, 1.0]",
        "actor.samples=32",
        "actor.iterations=3",
        "actor.horizon=2",
    ]
    planner = Planner(load_planner_config("icem", overrides), model, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    state = np.array([0.5, 0.0, 0.2, np.pi, 0.0, 0.0, 0.5], np.float32)
    plan = planner.plan({"image": image, "state": state}, {"image": image})
    assert sign * plan.actions[:, 6].sum() > 0.3  # toward the goal's closedness


def test_a_gripper_threshold_turns_the_read_goal_into_open_or_closed() -> None:
    model = world_model.build("tiny", seed=0)
    model.add_readout()
    constant_readout(model, [0.5, 0.0, 0.2, np.pi, 0.0, 0.0, 0.3])
    latents = torch.zeros(1, model.num_patches, model.latent_dim)
    for threshold, expected in ((0.25, 1.0), (0.35, 0.0)):
        overrides = ["cost.readout_weights=[0, 0, 0, 0, 0, 0, 1]"]
        overrides.append(f"cost.readout_gripper_threshold={threshold}")
        planner = Planner(load_planner_config("icem", overrides), model, device="cpu")
        assert planner.read_goal_state(latents)[0, 6].item() == expected
        assert planner.read_goal_state(latents)[0, 0].item() == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ConfigError, match="readout_gripper_threshold"):
        load_planner_config("icem", ["cost.readout_gripper_threshold=1.5"])


@pytest.mark.parametrize("threshold, sign", [(0.25, 1.0), (0.35, -1.0)])
def test_plan_aims_the_gripper_at_the_thresholded_goal_reading(threshold, sign) -> None:
    # The goal reads 0.3 closed and the hand is at 0.5: unthresholded, the planner would open
    # toward 0.3 in both cases; with the threshold it closes fully (0.3 >= 0.25) or opens (< 0.35).
    model = world_model.build("tiny", seed=0)
    model.add_readout()
    constant_readout(model, [0.5, 0.0, 0.2, np.pi, 0.0, 0.0, 0.3])
    overrides = [
        "cost.readout_weights=[0, 0, 0, 0, 0, 0, 1.0]",
        f"cost.readout_gripper_threshold={threshold}",
        "actor.samples=32",
        "actor.iterations=3",
        "actor.horizon=2",
    ]
    planner = Planner(load_planner_config("icem", overrides), model, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    state = np.array([0.5, 0.0, 0.2, np.pi, 0.0, 0.0, 0.5], np.float32)
    plan = planner.plan({"image": image, "state": state}, {"image": image})
    assert sign * plan.actions[:, 6].sum() > 0.3
