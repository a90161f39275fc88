"""``planner.batching``: lanes planning in threads get the plans a plain planner gets, with fewer
real rollouts; early, idle and failing lanes never block the others; gd runs unbatched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol

import numpy as np
import pytest
import torch

import world_model
from planner import LatentWorldModel, Planner, load_planner_config
from planner.batching import RolloutBatcher
from planner.planner import has_readout
from planner.protocol import ReadoutWorldModel, model_device
from robots.config import ConfigError
from world_model.errors import InputShapeError
from world_model.state_model import StateWorldModel

START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
MOVES = (
    np.array([0.03, 0.02, -0.01, 0, 0, 0, 0.2], np.float32),
    np.array([-0.02, 0.04, 0.02, 0, 0, 0, 0.0], np.float32),
)
ICEM = ["actor.samples=32", "actor.iterations=3", "actor.elites=4"]
CEM = ["actor.samples=16", "actor.iterations=2", "actor.elites=4", "actor.horizon=2"]
GD = ["actor.restarts=3", "actor.steps=3"]
HANG_GUARD_S = 60.0  # only ever reached if a lane deadlocks


class CountedModel:
    """A real world model whose ``rollout`` calls (and their batch sizes) are counted."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.num_patches = model.num_patches
        self.latent_dim = model.latent_dim
        self.device = model_device(model)
        self.batches: list[int] = []

    def encode(self, images: Any, states: Any = None) -> torch.Tensor:
        return self.model.encode(images, states)

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.batches.append(actions.shape[0])
        return self.model.rollout(z0, s0, actions)


def lane_inputs(lane: int, image_size: int) -> tuple[dict, dict]:
    """(observation, goal) of lane ``lane``: different states and images per lane."""
    rng = np.random.default_rng(lane)
    image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    goal_image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
    obs = {"image": image, "state": START}
    return obs, {"image": goal_image, "state": START + MOVES[lane]}


def run_in_threads(batcher: RolloutBatcher, jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run job i as lane i in its own thread, all lanes active before any starts; returns each
    job's result or the exception it raised."""
    results: list[Any] = [None] * len(jobs)
    for index in range(len(jobs)):
        batcher.enter(index)

    def work(index: int) -> None:
        try:
            results[index] = jobs[index]()
        except Exception as error:
            results[index] = error
        finally:
            batcher.leave(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    assert not any(thread.is_alive() for thread in threads), "a lane hung"
    return results


def plans_match(model: Any, preset: str, overrides: list[str], image_size: int, seeds=(3, 4)):
    """Two lanes plan concurrently; each matches a plain planner. Returns (batcher, counter,
    lane plans)."""
    counted = CountedModel(model)
    batcher = RolloutBatcher(counted, lanes=2)
    lanes = [Planner.from_config(preset, batcher.lane(i), "cpu", overrides) for i in range(2)]
    plain = Planner.from_config(preset, model, "cpu", overrides)
    for planner, seed in zip(lanes, seeds, strict=True):
        planner.reset(seed)
    jobs = [lambda i=i: lanes[i].plan(*lane_inputs(i, image_size)) for i in range(2)]
    plans = run_in_threads(batcher, jobs)
    for index, seed in enumerate(seeds):
        assert not isinstance(plans[index], Exception), plans[index]
        plain.reset(seed)
        expected = plain.plan(*lane_inputs(index, image_size))
        np.testing.assert_allclose(plans[index].actions, expected.actions, atol=1e-5)
        assert plans[index].energy == pytest.approx(expected.energy, abs=1e-5)
        assert plans[index].evaluations == expected.evaluations
    return batcher, counted, plans


def test_state_model_lanes_plan_like_a_plain_planner_with_merged_rollouts():
    model = StateWorldModel(num_patches=8, latent_dim=16, seed=0)
    batcher, counted, plans = plans_match(model, "icem", ICEM, image_size=32)
    lane_calls = sum(len(plan.trace) for plan in plans)
    assert len(counted.batches) < lane_calls
    assert len(counted.batches) == max(len(plan.trace) for plan in plans)  # lock-step
    assert batcher.merged_calls == len(counted.batches) and batcher.direct_calls == 0
    assert counted.batches[0] == 64  # both lanes' 32 samples in one call


def test_tiny_world_model_lanes_plan_like_a_plain_planner():
    model = world_model.build("tiny", device="cpu", seed=0)
    batcher, counted, plans = plans_match(model, "cem_paper", CEM, image_size=64)
    assert len(counted.batches) < sum(len(plan.trace) for plan in plans)
    assert batcher.merged_calls > 0 and batcher.direct_calls == 0


def test_gd_actor_runs_through_a_lane_unbatched_where_it_needs_gradients():
    model = StateWorldModel(num_patches=8, latent_dim=16, seed=0)
    batcher, counted, plans = plans_match(model, "gd", GD, image_size=32)
    # Each Adam step's rollout runs directly (autograd); the no-grad scorings are merged.
    assert batcher.direct_calls == 2 * 3
    assert batcher.merged_calls > 0
    assert len(counted.batches) < sum(len(plan.trace) for plan in plans)


def test_a_lane_model_is_a_latent_world_model_on_the_real_models_device():
    model = StateWorldModel(num_patches=8, latent_dim=16)
    batcher = RolloutBatcher(model, lanes=3)
    lane = batcher.lane(2)
    assert isinstance(lane, LatentWorldModel) and not isinstance(lane, torch.nn.Module)
    assert model_device(lane) == model_device(model) == batcher.device
    assert (lane.num_patches, lane.latent_dim) == (8, 16)
    states = torch.as_tensor(START).unsqueeze(0)
    torch.testing.assert_close(lane.encode(None, states), model.encode(None, states))


def test_a_lane_that_is_never_active_or_finishes_early_blocks_no_one():
    model = StateWorldModel(num_patches=8, latent_dim=16)
    counted = CountedModel(model)
    batcher = RolloutBatcher(counted, lanes=3)
    short = Planner.from_config("icem", batcher.lane(0), "cpu", [*ICEM[:1], "actor.iterations=1"])
    long = Planner.from_config("icem", batcher.lane(1), "cpu", ICEM)
    # Lane 2 never plans; lane 0 is done after its first rollouts, lane 1 goes on alone.
    with batcher.active(1):
        pass  # entering and leaving alone changes nothing
    plans = run_in_threads(
        batcher,
        [lambda: short.plan(*lane_inputs(0, 32)), lambda: long.plan(*lane_inputs(1, 32))],
    )
    assert all(not isinstance(plan, Exception) for plan in plans), plans
    assert len(plans[1].trace) > len(plans[0].trace)
    assert len(counted.batches) == len(plans[1].trace)  # merged while both planned
    # One lane alone inside its block, in this thread: flushes by itself.
    with batcher.active(0):
        alone = short.plan(*lane_inputs(0, 32))
    assert np.isfinite(alone.energy)
    # Outside any active block, a lane calls the real model directly.
    direct = batcher.direct_calls
    short.plan(*lane_inputs(0, 32))
    assert batcher.direct_calls > direct


def test_an_error_in_the_merged_call_reaches_every_lane_and_nothing_hangs():
    model = StateWorldModel(num_patches=8, latent_dim=16)
    batcher = RolloutBatcher(model, lanes=2)
    bad_z0 = torch.zeros(4, 8, 15)  # wrong latent width: the real model refuses it
    states, actions = torch.zeros(4, 7), torch.zeros(4, 2, 7)
    jobs = [lambda i=i: batcher.lane(i).rollout(bad_z0, states, actions) for i in range(2)]
    errors = run_in_threads(batcher, jobs)
    assert all(isinstance(error, InputShapeError) for error in errors), errors
    assert all("z0" in str(error) for error in errors)
    assert batcher.merged_calls == 0
    # The batcher still serves good requests afterwards.
    good_z0 = torch.zeros(4, 8, 16)
    jobs = [lambda i=i: batcher.lane(i).rollout(good_z0, states, actions) for i in range(2)]
    latents = run_in_threads(batcher, jobs)
    assert [tuple(z.shape) for z in latents] == [(4, 2, 8, 16)] * 2
    assert batcher.merged_calls == 1


def test_bad_lane_counts_and_indices_are_refused():
    model = StateWorldModel(num_patches=8, latent_dim=16)
    with pytest.raises(ValueError, match="lanes"):
        RolloutBatcher(model, lanes=0)
    batcher = RolloutBatcher(model, lanes=2)
    with pytest.raises(IndexError, match="0..1"):
        batcher.lane(2)
    with pytest.raises(RuntimeError, match="already active"), batcher.active(0):
        batcher.enter(0)


def test_same_device_treats_an_unset_cuda_index_as_the_current_one() -> None:
    from planner.protocol import same_device

    assert same_device(torch.device("cpu"), torch.device("cpu"))
    assert not same_device(torch.device("cpu"), torch.device("cuda:0"))
    assert not same_device(torch.device("cuda:0"), torch.device("cuda:1"))
    if torch.cuda.is_available():  # the index of "cuda" is looked up only on a CUDA machine
        current = torch.device(f"cuda:{torch.cuda.current_device()}")
        assert same_device(torch.device("cuda"), current)


def protocol_members(*protocols: type) -> set[str]:
    """Every member a world-model protocol declares: annotated attributes and methods."""
    members: set[str] = set()
    for protocol in protocols:
        for cls in protocol.__mro__:
            if cls in (object, Protocol, Generic):
                continue
            members |= set(getattr(cls, "__annotations__", {}))
            members |= {name for name in vars(cls) if not name.startswith("_")}
    return members


@pytest.mark.parametrize("with_readout", [False, True])
def test_a_lane_model_has_every_protocol_member_the_real_model_has(with_readout):
    """The protocols enumerated: each member of the real model is there on the lane model and
    gives the real model's answer (``read_state`` included, and ``readout`` where a model has
    an attribute for its head), so planners that need a readout run in lanes too."""
    members = protocol_members(LatentWorldModel, ReadoutWorldModel)
    assert {"num_patches", "latent_dim", "encode", "rollout", "read_state"} <= members
    model = world_model.build("tiny", seed=0)
    if with_readout:
        model.add_readout()
    lane = RolloutBatcher(model, lanes=2).lane(1)
    assert isinstance(lane, ReadoutWorldModel)
    for name in members:
        assert hasattr(lane, name) == hasattr(model, name), name
    assert (lane.num_patches, lane.latent_dim) == (model.num_patches, model.latent_dim)
    assert lane.config is model.config and lane.readout is model.readout
    assert has_readout(lane) is with_readout
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    latent = lane.encode(image)
    torch.testing.assert_close(latent, model.encode(image))
    actions = torch.zeros(1, 2, 7)
    torch.testing.assert_close(
        lane.rollout(latent, torch.as_tensor(START)[None], actions),
        model.rollout(latent, torch.as_tensor(START)[None], actions),
    )
    if with_readout:
        torch.testing.assert_close(lane.read_state(latent), model.read_state(latent))
    planner_config = load_planner_config("icem_readout", ICEM)
    if with_readout:
        assert Planner(planner_config, lane, model_device(model)).world_model is lane
    else:  # refused by name, as the real model is
        with pytest.raises(ConfigError, match="readout head"):
            Planner(planner_config, lane, model_device(model))


def test_a_lane_model_forwards_nothing_its_model_lacks():
    """A model without ``read_state`` gives a lane model without it (not a method that fails
    later), so ``has_readout`` answers for the lane as for the model."""
    counted = CountedModel(StateWorldModel(num_patches=8, latent_dim=16))
    lane = RolloutBatcher(counted, lanes=1).lane(0)
    assert not hasattr(lane, "read_state") and not has_readout(lane)
    assert isinstance(lane, LatentWorldModel) and not isinstance(lane, ReadoutWorldModel)
    with pytest.raises(AttributeError, match="read_state"):
        lane.read_state  # noqa: B018
