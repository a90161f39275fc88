"""The Planner facade: config loading, determinism, goal cache, input checks, safety filter."""

from __future__ import annotations

import numpy as np
import pytest

from planner import LatentWorldModel, Plan, PlanInputError, Planner, load_planner_config
from robots.config import ConfigError
from world_model.state_model import StateWorldModel

IMAGE = np.zeros((32, 32, 3), np.uint8)
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
GOAL = START + np.array([0.03, 0.02, -0.01, 0, 0, 0, 0], np.float32)
FAST = ["actor.samples=32", "actor.iterations=3"]


@pytest.fixture(scope="module")
def model() -> StateWorldModel:
    return StateWorldModel(num_patches=8, latent_dim=16, seed=0)


def obs(state=START, image=IMAGE) -> dict:
    return {"image": image, "state": state}


def make(model, preset="cem_release", overrides=FAST) -> Planner:
    return Planner.from_config(preset, world_model=model, device="cpu", overrides=overrides)


def test_presets_load_and_the_plan_has_the_documented_shape(model):
    assert isinstance(model, LatentWorldModel)
    for name in ("cem_paper", "cem_release", "icem", "gd", "cem+gd", "mppi"):
        assert load_planner_config(name).actor.name == name.replace("_paper", "").replace(
            "_release", ""
        )
    plan = make(model).plan(obs(), {"image": IMAGE, "state": GOAL})
    assert isinstance(plan, Plan)
    assert plan.action.shape == (7,) and plan.action.dtype == np.float32
    assert plan.actions.shape == (2, 7) and plan.actions.dtype == np.float32
    assert set(plan.timings) == {"encode", "plan", "total"} and isinstance(plan.energy, float)


def test_bad_configs_are_rejected_by_name(model):
    with pytest.raises(ConfigError, match="samples"):
        make(model, overrides=["actor.samples=0"])
    with pytest.raises(ConfigError, match="unknown actor"):
        make(model, overrides=["actor.name=newton"])
    with pytest.raises(ConfigError, match="unknown config key"):
        make(model, overrides=["actor.sample=3"])
    with pytest.raises(FileNotFoundError, match="cem_paper"):
        make(model, preset="no_such_planner")


def test_plans_are_deterministic_under_the_seed(model):
    goal = {"image": IMAGE, "state": GOAL}
    first, second = make(model), make(model)
    plan_a, plan_b = first.plan(obs(), goal), second.plan(obs(), goal)
    np.testing.assert_array_equal(plan_a.actions, plan_b.actions)
    first.reset()
    np.testing.assert_array_equal(first.plan(obs(), goal).actions, plan_a.actions)
    other = make(model, overrides=[*FAST, "seed=7"]).plan(obs(), goal)
    assert not np.array_equal(other.actions, plan_a.actions)


def test_warm_start_is_used_and_reset_clears_it(model):
    planner = make(model, "icem", ["actor.samples=32", "actor.iterations=3"])
    goal = {"image": IMAGE, "state": GOAL}
    cold = planner.plan(obs(), goal)
    warm = planner.plan(obs(), goal)  # carried elites are scored again: more evaluations
    assert warm.evaluations > cold.evaluations
    planner.reset()
    np.testing.assert_array_equal(planner.plan(obs(), goal).actions, cold.actions)


def test_goal_latents_are_cached_by_content(model):
    planner = make(model)
    goal = {"image": IMAGE.copy(), "state": GOAL.copy()}
    planner.plan(obs(), goal)
    planner.plan(obs(), {"image": IMAGE.copy(), "state": GOAL.copy()})  # same content, new arrays
    assert (planner.cache_hits, planner.cache_misses) == (1, 1)
    other = IMAGE.copy()
    other[0, 0, 0] = 1
    planner.plan(obs(), {"image": other, "state": GOAL})
    assert (planner.cache_hits, planner.cache_misses) == (1, 2)


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        ({"state": START}, "no 'image'"),
        ({"image": IMAGE}, "no 'state'"),
        (obs(image=IMAGE.astype(np.float32)), "uint8"),
        (obs(image=np.zeros((32, 32), np.uint8)), r"\[H, W, 3\]"),
        (obs(image=np.zeros((32, 32, 4), np.uint8)), r"\[H, W, 3\]"),
        (obs(image=np.zeros((0, 32, 3), np.uint8)), "pixels"),
        (obs(image=np.zeros((9000, 16, 3), np.uint8)), "pixels"),
        (obs(state=START[:6]), "7 entries"),
        (obs(state=np.full(7, np.nan, np.float32)), "NaN"),
        (obs(state="up"), "7 numbers"),
        (IMAGE, "dict"),
        (obs(image=[[0]]), "uint8 array"),
    ],
)
def test_malformed_observations_raise_a_named_error(model, observation, message):
    with pytest.raises(PlanInputError, match=message):
        make(model).plan(observation, {"image": IMAGE, "state": GOAL})


def test_malformed_goals_raise_a_named_error(model):
    planner = make(model)
    with pytest.raises(PlanInputError, match="goal"):
        planner.plan(obs(), {"image": IMAGE, "state": [0.0, 1.0]})
    with pytest.raises(PlanInputError, match="goal"):
        planner.plan(obs(), np.zeros((32, 32, 3), np.int64))
    with pytest.raises(ValueError, match="states"):  # the state model needs the goal state
        planner.plan(obs(), IMAGE)


def test_the_safety_filter_clips_what_leaves(model):
    huge = [*FAST, "bounds.translation_max=2.0", "bounds.gripper_max=5.0"]
    huge += ["actor.init_std_translation=0.5"]
    planner = make(model, "cem_release", huge)
    far_state = START.copy()
    far_state[:3] = [0.63, 0.0, 0.3]  # near the workspace's +x wall
    far_goal = far_state + np.array([0.9, 0.0, 0.0, 0, 0, 0, 0], np.float32)
    plan = planner.plan(obs(state=far_state), {"image": IMAGE, "state": far_goal})
    assert np.abs(plan.actions[:, 0]).max() > 0.2  # the planner itself asked for a big step
    assert np.linalg.norm(plan.action[:3]) <= 0.05 + 1e-6
    assert far_state[0] + plan.action[0] <= 0.65 + 1e-6
    assert 0.0 <= far_state[6] + plan.action[6] <= 1.0


def test_gd_planner_lowers_the_energy(model):
    planner = make(model, "gd", ["actor.restarts=3", "actor.steps=15"])
    plan = planner.plan(obs(), {"image": IMAGE, "state": GOAL})
    start, goal = model.encode(None, START), model.encode(None, GOAL)
    assert plan.energy < 0.5 * float((start - goal).abs().mean())


def test_planner_runs_on_the_tiny_vjepa_world_model():
    world_model = pytest.importorskip("world_model")
    tiny = world_model.build("tiny", device="cpu", seed=0)
    planner = Planner.from_config(
        "cem_release",
        world_model=tiny,
        device="cpu",
        overrides=["actor.samples=8", "actor.elites=4", "actor.iterations=2"],
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    plan = planner.plan(obs(image=image), goal)
    assert plan.action.shape == (7,) and np.isfinite(plan.action).all()
    assert np.isfinite(plan.energy) and plan.evaluations == 8 * 2 * 2 + 2


def test_from_config_takes_a_model_by_name():
    """``Planner.from_config(preset, world_model="sim-small")``: the name is resolved
    (``world_model.resolve_model``) onto the planner's device; a bad preset fails first."""
    import world_model
    from world_model import CheckpointNotFoundError

    planner = Planner.from_config("icem", world_model="sim-small", device="cpu", overrides=FAST)
    assert isinstance(planner.world_model, world_model.WorldModel)
    image = np.zeros((planner.world_model.config.img_size,) * 2 + (3,), np.uint8)
    assert planner.plan(obs(image=image), {"image": image}).action.shape == (7,)
    state = Planner.from_config("cem_paper", world_model="state", device="cpu", overrides=FAST)
    assert isinstance(state.world_model, StateWorldModel)
    with pytest.raises(CheckpointNotFoundError, match="random:small"):
        Planner.from_config("icem", world_model="small", device="cpu")
    with pytest.raises(FileNotFoundError, match="no planner config named 'nope'"):
        Planner.from_config("nope", world_model="no/such/model.pt", device="cpu")
