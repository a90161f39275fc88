"""The critic (a learned cost-to-go in the cost module): its head, the `train critic` stage
(loss goes down, exact resume, only the head moves), checkpoints with and without it, the
opt-in cost term and what the planner does with it."""

from __future__ import annotations

import contextlib
import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from planner import Planner, load_planner_config
from planner.config import CostConfig
from planner.cost import Cost
from robots.config import ConfigError
from world_model import NoCriticError
from world_model.data import TrajectoryWriter
from world_model.train import load_train_config, train
from world_model.train_critic import CriticSamples, critic_targets
from world_model.train_loop import Checkpointer

FRAMES = 8
REPO = Path(__file__).resolve().parents[1]


def frame(x: float, block: tuple[int, int] | None) -> np.ndarray:
    """A 64-px image: a white hand whose column follows x, and a red block where given."""
    image = np.zeros((64, 64, 3), np.uint8)
    column = int((x - 0.3) * 150)
    image[24:40, column : column + 8] = 255
    if block is not None:
        image[block[0] : block[0] + 8, block[1] : block[1] + 8, 0] = 255
    return image


@pytest.fixture(scope="module")
def tiny_residual(tmp_path_factory) -> Path:
    """The tiny preset with a residual predictor: untrained, it predicts "nothing changes",
    so in a plan only the integrated state tells the critic what an action did."""
    text = (REPO / "configs" / "model" / "tiny.yaml").read_text()
    path = tmp_path_factory.mktemp("model") / "tiny_residual.yaml"
    path.write_text(text.replace("predictor:\n", "predictor:\n  residual: true\n"))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """8 episodes of 8 frames in which the hand moves +x: 4 "reach" (no block), 4 "push"
    with a red block at a place of their own (what makes another episode's goal a negative)."""
    root = tmp_path_factory.mktemp("critic_data")
    rng = np.random.default_rng(0)
    with TrajectoryWriter(root, episodes_per_chunk=3) as writer:
        for episode in range(8):
            states = np.zeros((FRAMES, 7), np.float32)
            start = rng.uniform(0.3, 0.36)
            states[:, 0] = start + 0.03 * np.arange(FRAMES)
            states[:, 2] = 0.2
            states[:, 3] = np.pi
            block = None if episode < 4 else (int(rng.integers(0, 16)), int(rng.integers(0, 56)))
            frames = np.stack([frame(x, block) for x in states[:, 0]])
            writer.add_episode(frames, states, task="reach" if block is None else "push")
    return root


def critic_config(data: Path, out: Path, *overrides: str, model: str = "tiny"):
    return load_train_config(
        "critic_sim_small",
        [
            f"data.root={data}",
            f"out={out}",
            f"model={model}",
            "init=null",
            "device=cpu",
            "batch_size=64",
            "steps=200",
            "log_every=10",
            "checkpoint_every=40",
            "optim.warmup_steps=10",
            "optim.decay_steps=40",
            "critic.hidden=32",
            "critic.max_steps=16",
            *overrides,
        ],
    )


def read_metrics(out: Path) -> list[dict[str, float]]:
    with open(out / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def trained(data_dir, tiny_residual, tmp_path_factory) -> Path:
    """A tiny model whose critic was trained on ``data_dir`` (the run folder)."""
    out = tmp_path_factory.mktemp("critic_run")
    train(
        "critic", critic_config(data_dir, out, "critic.imagined_weight=0", model=str(tiny_residual))
    )
    return out


def test_the_critic_gives_one_nonnegative_cost_to_go_per_frame() -> None:
    model = world_model.build("tiny", seed=0)
    n, d = model.num_patches, model.latent_dim
    latents, states = torch.randn(5, n, d), torch.rand(5, 7)
    with pytest.raises(NoCriticError, match="train critic"):
        model.cost_to_go(latents, states, latents[:1])
    model.add_critic(hidden=16)
    with torch.no_grad():
        model.critic.out.bias.fill_(-30.0)  # a head whose pre-activation is far below zero
    values = model.cost_to_go(latents, states, latents[:1])  # one goal for every frame
    assert values.shape == (5,) and bool((values >= 0).all())
    paired = model.cost_to_go(latents, states, latents)
    assert paired.shape == (5,)
    with pytest.raises(world_model.InputShapeError, match="states must be"):
        model.cost_to_go(latents, states[:2], latents[:1])
    with pytest.raises(world_model.InputShapeError, match="goal latents"):
        model.cost_to_go(latents, states, latents[:1, :2])


def test_targets_take_the_shorter_of_the_episode_and_the_bootstrap() -> None:
    steps_left = torch.tensor([0, 5, 5, 3])
    bootstrap = torch.tensor([9.0, 2.0, 8.0, 1.0])
    negative = torch.tensor([False, False, False, True])
    targets = critic_targets(steps_left, bootstrap, negative, max_steps=64)
    assert targets.tolist() == [0.0, 3.0, 5.0, 64.0]


def test_samples_stay_inside_episodes_and_negatives_come_from_other_scenes(trained) -> None:
    import world_model.critic_data as critic_data

    cache = critic_data.LatentCache(**torch.load(trained / "critic_latents.pt")["cache"])
    config = critic_config(Path("unused"), Path("unused")).critic
    samples = CriticSamples(cache, config, batch_size=256, seed=3)
    batch = next(iter(samples))
    episode = cache.episode_of[batch["frame"]]
    goal_episode = cache.episode_of[batch["goal"]]
    shown = batch["frame"] + batch["steps"]
    assert torch.equal(cache.episode_of[shown], episode)
    positive = ~batch["negative"]
    assert bool((batch["goal"][positive] >= shown[positive]).all())
    assert torch.equal(goal_episode[positive], episode[positive])
    negative = batch["negative"]
    assert 0 < int(negative.sum()) < 256
    assert bool((goal_episode[negative] != episode[negative]).all())
    reach = torch.tensor([task == "reach" for task in cache.tasks])
    assert not bool((reach[episode] & reach[goal_episode] & negative).any())
    again = next(iter(CriticSamples(cache, config, batch_size=256, seed=3)))
    assert all(torch.equal(again[key], batch[key]) for key in batch)


def test_the_critic_stage_lowers_its_loss_and_trains_only_the_head(trained) -> None:
    rows = read_metrics(trained)
    first = np.mean([row["loss"] for row in rows[:3]])
    last = np.mean([row["loss"] for row in rows[-5:]])
    assert last < 0.5 * first
    assert np.mean([row["positive_mae"] for row in rows[-5:]]) < rows[0]["positive_mae"]
    model = world_model.load(trained / "model")
    assert model.config.critic.enabled and model.config.critic.hidden == 32
    sizes = copy.deepcopy(model.config)
    sizes.critic.enabled = False
    fresh = world_model.build(sizes, seed=0)
    for name, tensor in fresh.state_dict().items():  # encoder and predictor untouched
        assert torch.equal(model.state_dict()[name], tensor), name


def test_the_critic_stage_resumes_exactly(data_dir, tmp_path) -> None:
    overrides = ("steps=30", "checkpoint_every=10")
    whole = tmp_path / "whole"
    train("critic", critic_config(data_dir, whole, *overrides))
    parts = tmp_path / "parts"
    train("critic", critic_config(data_dir, parts, *overrides, "halt_after=20"))
    assert not (parts / "model").exists() and Checkpointer(parts).steps() == [10, 20]
    train("critic", critic_config(data_dir, parts, *overrides))
    resumed = {row["step"]: row for row in read_metrics(parts)}  # + a row at step 21
    for row in read_metrics(whole):
        row.pop("seconds"), resumed[row["step"]].pop("seconds")
        assert resumed[row["step"]] == pytest.approx(row, rel=1e-6, abs=1e-7)
    a = world_model.load(whole / "model").state_dict()
    b = world_model.load(parts / "model").state_dict()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_critic_survives_save_and_load_and_old_checkpoints_load_without_one(tmp_path) -> None:
    plain = world_model.build("tiny", seed=0)
    world_model.save(plain, tmp_path / "plain")
    assert world_model.load(tmp_path / "plain").critic is None
    plain.add_critic(hidden=16, use_state=False, max_steps=20)
    world_model.save(plain, tmp_path / "with")
    loaded = world_model.load(tmp_path / "with")
    assert loaded.config.critic == plain.config.critic
    latents = torch.randn(3, plain.num_patches, plain.latent_dim)
    states = torch.rand(3, 7)
    with torch.no_grad():
        expected = plain.cost_to_go(latents, states, latents[:1])
        assert torch.equal(loaded.cost_to_go(latents, states, latents[:1]), expected)


def test_the_critic_term_is_opt_in_and_needs_a_model_with_a_critic() -> None:
    assert load_planner_config("icem").cost.critic_weight == 0.0
    assert load_planner_config("icem_critic").cost.critic_weight > 0
    only = load_planner_config("icem_critic_only").cost
    assert only.goal_weight == 0 and only.critic_weight > 0
    both = load_planner_config("icem_readout_critic").cost
    assert both.uses_readout and both.uses_critic
    with pytest.raises(ConfigError, match="critic_weight"):
        load_planner_config("icem", ["cost.critic_weight=-1"])
    with pytest.raises(ConfigError, match="train critic") as refused:
        Planner(load_planner_config("icem_critic"), world_model.build("tiny", seed=0), "cpu")
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="no critic was given"):
        Cost(CostConfig(critic_weight=1.0))


def test_the_cost_adds_the_weighted_critic_at_the_end_of_the_rollout() -> None:
    seen = {}

    def critic(latents, states, goal):
        seen["latents"], seen["states"] = latents, states
        return states[:, 0] * 10.0  # a cost-to-go that grows with x

    cost = Cost(CostConfig(goal_weight=0.0, critic_weight=0.5), critic=critic)
    predicted = torch.randn(2, 3, 4, 8)
    actions = torch.zeros(2, 3, 7)
    actions[1, :, 0] = 0.01  # +3 cm in x over the horizon
    start = torch.tensor([[0.5, 0.0, 0.2, np.pi, 0.0, 0.0, 0.0]])
    energy = cost(predicted, torch.zeros(1, 4, 8), actions, start)
    assert torch.equal(seen["latents"], predicted[:, -1])
    assert energy.tolist() == pytest.approx([0.5 * 5.0, 0.5 * 5.3], abs=1e-5)


def test_the_planner_with_the_critic_moves_toward_a_later_frame(data_dir, trained) -> None:
    model = world_model.load(trained / "model")
    overrides = ["actor.samples=32", "actor.iterations=3", "cost.goal_weight=0.0"]
    planner = Planner(load_planner_config("icem_critic", overrides), model, device="cpu")
    from world_model.data import TrajectoryReader

    episode = TrajectoryReader(data_dir).episode(5)
    obs = {"image": episode.frames[1], "state": episode.states[1]}
    plan = planner.plan(obs, {"image": episode.frames[-1]})
    assert plan.actions[0, 0] > 0.02  # +x, the way the episodes went
    assert plan.action[0] > 0.0


def test_the_imagined_step_bound_caches_random_moves_and_bounds_one_step(
    data_dir, tiny_residual, tmp_path
) -> None:
    from world_model.critic_data import EXPLORE_GRIPPER, EXPLORE_RADIUS, LatentCache
    from world_model.train_critic import CriticObjective

    out = tmp_path / "run"
    config = critic_config(data_dir, out, "critic.imagined_weight=1.0", model=str(tiny_residual))
    train("critic", config)
    cache = LatentCache(**torch.load(out / "critic_latents.pt")["cache"])
    assert cache.explored.shape == cache.encoded.shape
    moves = cache.explored_actions
    assert bool((moves[:, :3].norm(dim=1) <= EXPLORE_RADIUS + 1e-6).all())
    assert bool((moves[:, 6].abs() <= EXPLORE_GRIPPER).all()) and bool((moves[:, 3:6] == 0).all())
    assert any(row["imagined"] > 0 for row in read_metrics(out))

    model = world_model.load(out / "model")
    objective = CriticObjective(model, config.critic, data_dir, out, verbose=False)
    batch = next(iter(objective.stream(64, seed=5, rank=0, start=0, tasks=None)))
    goals = cache.encoded[batch["goal"]].float()

    def bound(value: float, start_value: float) -> float:
        """The term with a critic that rates every imagined step ``value`` and a target
        network that rates every frame t ``start_value``."""
        objective.target = lambda latents, states, goal: torch.full((len(latents),), start_value)

        def critic(latents, states, goal):
            return torch.full((len(latents),), value)

        frames = batch["frame"]
        return float(objective.imagined_bound(critic, frames, goals, contextlib.nullcontext))

    assert bound(value=8.0, start_value=10.0) == pytest.approx(((9.0 - 8.0) / 10.0) ** 2)
    assert bound(value=9.5, start_value=10.0) == 0.0  # a step may shorten the way by 1


def test_the_ranking_prefers_the_data_action_over_a_random_one(
    data_dir, tiny_residual, tmp_path
) -> None:
    from world_model.train_critic import CriticObjective

    out = tmp_path / "run"
    config = critic_config(
        data_dir, out, "critic.rank_weight=1.0", "steps=120", model=str(tiny_residual)
    )
    train("critic", config)
    rows = read_metrics(out)
    assert rows[-1]["ranked"] > rows[0]["ranked"] and rows[-1]["ranked"] >= 0.8

    model = world_model.load(out / "model")
    objective = CriticObjective(model, config.critic, data_dir, out, verbose=False)
    batch = next(iter(objective.stream(64, seed=5, rank=0, start=0, tasks=None)))
    goals = objective.cache.encoded[batch["goal"]].float()
    negative = batch["negative"]

    def ranking(data_value: float, random_value: float) -> tuple[float, float]:
        """The term with a critic that rates the data action's outcome ``data_value`` and the
        random action's ``random_value`` (the data's is scored first)."""
        values = iter((data_value, random_value))

        def critic(latents, states, goal):
            return torch.full((len(latents),), next(values))

        loss, ranked = objective.ranking(
            critic, batch["frame"], goals, negative, contextlib.nullcontext
        )
        return float(loss), float(ranked)

    assert ranking(data_value=2.0, random_value=30.0) == (0.0, 1.0)  # in order by > margin
    loss, ranked = ranking(data_value=7.0, random_value=2.0)  # the random action rated better
    assert ranked == 0.0 and loss >= (5.0 / 10.0) ** 2


def test_the_ranking_needs_a_predicted_step(data_dir, tmp_path) -> None:
    config = critic_config(
        data_dir, tmp_path / "run", "critic.rank_weight=1.0", "critic.rollout_steps=0"
    )
    with pytest.raises(ConfigError, match="rank_weight needs critic.rollout_steps"):
        train("critic", config)


def test_the_cache_holds_the_chosen_tasks_episodes_only(data_dir) -> None:
    from world_model.critic_data import build_cache

    model = world_model.build("tiny", seed=0)
    cache = build_cache(model, data_dir, rollout_steps=1, verbose=False, tasks=["push"])
    assert cache.tasks == ["push"] * 4 and len(cache.encoded) == 4 * FRAMES
    assert cache.episode_of.tolist() == [e for e in range(4) for _ in range(FRAMES)]
    with pytest.raises(ConfigError, match="no episode of the tasks"):
        build_cache(model, data_dir, rollout_steps=1, verbose=False, tasks=["grasp"])
