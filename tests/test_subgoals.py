"""The subgoal generator (the planner's hierarchical mode, issue #15): its head, the `train
subgoals` stage (it learns the frame k steps ahead better than copying the current one, only
the head moves, exact resume), checkpoints with and without it, and the planner's
``subgoal_ahead``."""

from __future__ import annotations

import copy
import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from planner import Planner, load_planner_config
from robots.config import ConfigError
from world_model import NoSubgoalsError
from world_model.data import TrajectoryReader, TrajectoryWriter
from world_model.train import load_train_config, train
from world_model.train_loop import Checkpointer
from world_model.train_subgoals import SubgoalSamples, split_episodes

FRAMES = 8


def frame(x: float) -> np.ndarray:
    """A 64-px image: a white hand whose column follows x."""
    image = np.zeros((64, 64, 3), np.uint8)
    column = int((x - 0.3) * 150)
    image[24:40, column : column + 8] = 255
    return image


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """10 successful episodes of 8 frames in which the hand moves +3 cm a step, and one
    failed one in which it moves back (never a way to a goal)."""
    root = tmp_path_factory.mktemp("subgoal_data")
    rng = np.random.default_rng(0)
    with TrajectoryWriter(root, episodes_per_chunk=4) as writer:
        for episode in range(11):
            states = np.zeros((FRAMES, 7), np.float32)
            step = 0.03 if episode < 10 else -0.01
            states[:, 0] = rng.uniform(0.3, 0.33) + (0.1 if step < 0 else 0) + step * np.arange(8)
            states[:, 2] = 0.2
            states[:, 3] = np.pi
            frames = np.stack([frame(x) for x in states[:, 0]])
            writer.add_episode(frames, states, task="reach", success=episode < 10)
    return root


def subgoal_config(data: Path, out: Path, *overrides: str):
    return load_train_config(
        "subgoals_sim_small_v2",
        [
            f"data.root={data}",
            f"out={out}",
            "model=tiny",
            "init=null",
            "device=cpu",
            "batch_size=32",
            "steps=300",
            "log_every=10",
            "checkpoint_every=50",
            "optim.lr=2.0e-3",
            "optim.warmup_steps=10",
            "optim.decay_steps=100",
            "subgoals.hidden=32",
            "subgoals.depth=1",
            "subgoals.heads=2",
            "subgoals.max_ahead=3",
            "subgoals.holdout_every=5",
            "subgoals.state_weight=0.3",
            *overrides,
        ],
    )


def read_metrics(out: Path) -> list[dict[str, float]]:
    with open(out / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    """A tiny model whose subgoal generator was trained on ``data_dir`` (the run folder)."""
    out = tmp_path_factory.mktemp("subgoal_run")
    train("subgoals", subgoal_config(data_dir, out))
    return out


def test_an_untrained_generator_proposes_the_current_frame_and_checks_its_inputs() -> None:
    model = world_model.build("tiny", seed=0)
    n, d = model.num_patches, model.latent_dim
    latents = torch.nn.functional.layer_norm(torch.randn(3, n, d), (d,))
    states = torch.rand(3, 7)
    with pytest.raises(NoSubgoalsError, match="train subgoals"):
        model.propose_subgoal(latents, states, latents[:1], 1)
    model.add_subgoals(hidden=16, depth=1, heads=2, max_ahead=4)
    proposed, proposed_states = model.propose_subgoal(latents, states, latents[:1], 2)
    torch.testing.assert_close(proposed, latents, rtol=0, atol=1e-5)
    torch.testing.assert_close(proposed_states, states, rtol=0, atol=0)
    with pytest.raises(world_model.InputShapeError, match="1..4 steps ahead"):
        model.propose_subgoal(latents, states, latents[:1], 5)
    with pytest.raises(world_model.InputShapeError, match="states must be"):
        model.propose_subgoal(latents, states[:2], latents[:1], 1)


def test_samples_aim_k_steps_ahead_but_never_past_their_goal(trained) -> None:
    import world_model.critic_data as critic_data

    cache = critic_data.LatentCache(**torch.load(trained / "subgoal_latents.pt")["cache"])
    section = subgoal_config(Path("unused"), Path("unused")).subgoals
    train_episodes, held = split_episodes(np.arange(10), section.holdout_every)
    assert held.tolist() == [4, 9] and len(train_episodes) == 8
    samples = SubgoalSamples(cache, section, train_episodes, held, batch_size=256, seed=1)
    batch = next(iter(samples))
    episode = cache.episode_of[batch["frame"]]
    assert torch.equal(cache.episode_of[batch["goal"]], episode)
    assert torch.equal(
        batch["target"], torch.minimum(batch["frame"] + batch["ahead"], batch["goal"])
    )
    assert bool((batch["goal"] >= batch["frame"]).all())
    assert set(batch["ahead"].tolist()) == {1, 2, 3}
    assert not bool(np.isin(episode.numpy(), held).any())
    assert bool(np.isin(cache.episode_of[batch["holdout_frame"]].numpy(), held).all())
    assert not bool((cache.episode_of[batch["frame"]] == 10).any())  # the failed episode


def test_the_stage_learns_the_frame_ahead_better_than_copying_and_trains_only_the_head(
    trained, data_dir
) -> None:
    rows = read_metrics(trained)
    last = rows[-5:]
    assert np.mean([r["loss"] for r in last]) < 0.65 * rows[0]["loss"]
    assert np.mean([r["holdout_l1"] for r in last]) < 0.75 * np.mean([r["copy_l1"] for r in last])
    assert np.mean([r["holdout_cm"] for r in last]) < 2.0  # the hand moves 3 cm a step
    model = world_model.load(trained / "model")
    assert model.config.subgoals.enabled and model.config.subgoals.max_ahead == 3
    sizes = copy.deepcopy(model.config)
    sizes.subgoals.enabled = False
    fresh = world_model.build(sizes, seed=0)
    for name, tensor in fresh.state_dict().items():  # encoder and predictor untouched
        assert torch.equal(model.state_dict()[name], tensor), name
    episode = TrajectoryReader(data_dir).episode(4)  # a held-out episode
    latents = model.encode(episode.frames)
    states = torch.from_numpy(episode.states)
    proposed, proposed_state = model.propose_subgoal(latents[1:2], states[1:2], latents[-1:], 2)
    assert (proposed - latents[3]).abs().mean() < 0.75 * (latents[1] - latents[3]).abs().mean()
    assert abs(float(proposed_state[0, 0] - states[3, 0])) < 0.02  # 6 cm ahead, within 2 cm
    assert float(proposed_state[0, 0] - states[1, 0]) > 0.04


def test_the_stage_resumes_exactly(data_dir, tmp_path) -> None:
    overrides = ("steps=30", "checkpoint_every=10")
    whole = tmp_path / "whole"
    train("subgoals", subgoal_config(data_dir, whole, *overrides))
    parts = tmp_path / "parts"
    train("subgoals", subgoal_config(data_dir, parts, *overrides, "halt_after=20"))
    assert not (parts / "model").exists() and Checkpointer(parts).steps() == [10, 20]
    train("subgoals", subgoal_config(data_dir, parts, *overrides))
    a = world_model.load(whole / "model").state_dict()
    b = world_model.load(parts / "model").state_dict()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_subgoal_settings_are_refused_by_name(data_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match="multiple of heads"):
        train("subgoals", subgoal_config(data_dir, tmp_path, "subgoals.hidden=33"))
    with pytest.raises(ConfigError, match="final_goal_fraction"):
        train("subgoals", subgoal_config(data_dir, tmp_path, "subgoals.final_goal_fraction=2"))
    with pytest.raises(ConfigError, match="subgoal_ahead must be >= 0"):
        load_planner_config("fast_subgoals", ["subgoal_ahead=-1"])


def test_the_planner_aims_at_the_proposed_subgoal(tmp_path) -> None:
    """A generator that proposes the current frame (untrained: zero output layer) makes the
    hierarchical planner plan exactly as the plain one does toward the observation itself;
    a model without a generator, or a k beyond its training, is refused in one line."""
    plain_model = world_model.build("tiny", seed=0)
    overrides = ["actor.samples=16", "actor.iterations=2", "actor.elites=4"]
    with pytest.raises(ConfigError, match="train subgoals") as refused:
        Planner(load_planner_config("icem", [*overrides, "subgoal_ahead=1"]), plain_model, "cpu")
    assert "\n" not in str(refused.value)
    model = copy.deepcopy(plain_model)
    model.add_subgoals(hidden=16, depth=1, heads=2, max_ahead=2)
    with pytest.raises(ConfigError, match="exceeds the 2 steps"):
        Planner(load_planner_config("icem", [*overrides, "subgoal_ahead=3"]), model, "cpu")
    config = load_planner_config("icem", [*overrides, "subgoal_ahead=2"])
    hierarchical = Planner(config, model, "cpu")
    plain = Planner(dataclasses.replace(config, subgoal_ahead=0), plain_model, "cpu")
    image = frame(0.35)
    obs = {"image": image, "state": np.array([0.35, 0, 0.2, np.pi, 0, 0, 0], np.float32)}
    aimed = hierarchical.plan(obs, {"image": frame(0.5)})
    toward_itself = plain.plan(obs, {"image": image})
    np.testing.assert_allclose(aimed.actions, toward_itself.actions, atol=1e-5)
    assert aimed.energy == pytest.approx(toward_itself.energy, abs=1e-5)


def test_the_fast_subgoals_preset_is_fast_aiming_at_the_proposed_frame_and_state() -> None:
    fast, hierarchical = load_planner_config("fast"), load_planner_config("fast_subgoals")
    assert hierarchical.subgoal_ahead == 2
    assert hierarchical.cost.readout_weights == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    cost = dataclasses.replace(hierarchical.cost, readout_weights=fast.cost.readout_weights)
    assert dataclasses.replace(hierarchical, subgoal_ahead=0, cost=cost) == fast


def test_the_readout_term_aims_at_the_proposed_state() -> None:
    model = world_model.build("tiny", seed=0)
    model.add_readout()
    model.add_subgoals(hidden=16, depth=1, heads=2, max_ahead=2)
    overrides = ["actor.samples=16", "actor.iterations=2", "actor.elites=4", "subgoal_ahead=1"]
    planner = Planner(load_planner_config("icem_readout", overrides), model, "cpu")
    latent = torch.zeros(1, model.num_patches, model.latent_dim)
    now = torch.tensor([[0.4, 0.1, 0.3, np.pi, 0.0, 0.0, 0.375]])  # holding the cube
    for proposed_gripper, meant in ((0.7, 1.0), (0.45, 0.375), (0.3, 0.375), (0.1, 0.0)):
        proposed = torch.tensor([[0.4, 0.1, 0.2, np.pi, 0.0, 0.0, proposed_gripper]])
        goal_state = planner.read_goal_state(latent, proposed, now)
        assert goal_state.tolist() == [pytest.approx([0.4, 0.1, 0.2, np.pi, 0.0, 0.0, meant])]
        assert proposed[0, 6] == pytest.approx(proposed_gripper)  # the generator's is unchanged
