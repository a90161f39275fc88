"""Actors, cost and action space on the StateWorldModel (known dynamics, meaningful energy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planner import ActionBounds, Cost, CostConfig, Planner
from planner.actors import ActionSpace, Problem
from planner.actors.base import project_l1_ball
from planner.actors.icem import colored_noise, population_sizes
from planner.config import ActorConfig
from robots.franka import rollout_states
from world_model.state_model import StateWorldModel

IMAGE = np.zeros((32, 32, 3), np.uint8)
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
# Small budgets: these tests are about behaviour, not the presets' sizes.
SMALL = {
    "cem_release": ["actor.samples=64", "actor.iterations=5"],
    "icem": ["actor.samples=48", "actor.iterations=6"],
    "gd": ["actor.restarts=4", "actor.steps=20"],
    "cem+gd": ["actor.samples=48", "actor.iterations=3", "actor.steps=5"],
    "mppi": ["actor.samples=64", "actor.iterations=5"],
    "cem_paper": ["actor.samples=64", "actor.iterations=5"],
}


@pytest.fixture(scope="module")
def model() -> StateWorldModel:
    return StateWorldModel(num_patches=8, latent_dim=16, seed=0)


def goal_state(offset) -> np.ndarray:
    goal = START.copy()
    goal[:3] += np.asarray(offset, np.float32)
    return goal


def make_problem(model: StateWorldModel, goal: np.ndarray) -> Problem:
    state = torch.from_numpy(START).unsqueeze(0)
    return Problem(
        model,
        Cost(),
        model.encode(None, state),
        state,
        model.encode(None, torch.from_numpy(goal)),
    )


@pytest.mark.parametrize("preset", sorted(SMALL))
def test_every_actor_lowers_the_energy_below_the_zero_action(model, preset):
    goal = goal_state([0.03, -0.02, 0.01])
    zero_energy = float(make_problem(model, goal).evaluate(torch.zeros(1, 2, 7))[0])
    planner = Planner.from_config(preset, world_model=model, device="cpu", overrides=SMALL[preset])
    plan = planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": goal})
    assert plan.energy < 0.3 * zero_energy
    assert plan.evaluations > 0 and plan.trace.shape[1] == 2
    assert plan.trace[-1, 0] == plan.evaluations
    assert np.all(np.diff(plan.trace[:, 1]) <= 0)  # best-so-far never rises


def test_cem_paper_reaches_a_target_within_one_centimetre_in_two_replans(model):
    goal = goal_state([0.04, 0.03, -0.02])  # 5.4 cm away: more than one safe 5 cm step
    planner = Planner.from_config("cem_paper", world_model=model, device="cpu")
    state = torch.from_numpy(START)
    for _ in range(2):
        obs = {"image": IMAGE, "state": state.numpy()}
        plan = planner.plan(obs, {"image": IMAGE, "state": goal})
        state = planner.safety.target(state, torch.from_numpy(plan.action))
    error = float(np.linalg.norm(state[:3].numpy() - goal[:3]))
    assert error < 0.01, f"ended {error * 100:.2f} cm from the goal"


def test_cem_release_plans_a_two_step_sequence_that_reaches_the_target(model):
    goal = goal_state([0.06, -0.05, 0.03])  # beyond one step's ±5 cm per axis
    planner = Planner.from_config("cem_release", world_model=model, device="cpu")
    plan = planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": goal})
    end = rollout_states(torch.from_numpy(START)[None], torch.from_numpy(plan.actions)[None])
    error = float(np.linalg.norm(end[0, -1, :3].numpy() - goal[:3]))
    assert plan.actions.shape == (2, 7) and error < 0.01
    assert np.all(np.abs(plan.actions[:, :3]) <= 0.05 + 1e-6)


def test_evaluations_count_samples_times_horizon(model):
    planner = Planner.from_config(
        "cem_release", world_model=model, device="cpu", overrides=["actor.samples=20"]
    )
    plan = planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": START})
    assert plan.evaluations == 20 * 2 * 10 + 2  # 10 iterations, then the final mean once


def test_gd_gradients_flow_through_the_rollout(model):
    problem = make_problem(model, goal_state([0.02, 0.0, 0.0]))
    actions = torch.zeros(3, 2, 7, requires_grad=True)
    problem.evaluate(actions).sum().backward()
    assert actions.grad is not None and bool(torch.isfinite(actions.grad).all())
    assert float(actions.grad[:, :, 0].sum()) < 0  # moving +x lowers the energy
    assert float(actions.grad.abs().sum()) > 0


def test_cost_default_is_the_paper_energy_and_terms_are_opt_in():
    predicted = torch.randn(4, 2, 3, 5)
    goal = torch.randn(1, 3, 5)
    actions = torch.zeros(4, 2, 7)
    start = torch.tensor([[0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]])
    paper = (predicted[:, -1] - goal).abs().mean(dim=(1, 2))
    assert torch.allclose(Cost()(predicted, goal, actions, start), paper)
    actions[:, :, 2] = 0.5  # climbs 1 m over two steps: 0.35 m then 0.85 m over the 0.45 m ceiling
    cost = Cost(CostConfig(goal_weight=0.0, action_weight=1.0, workspace_weight=1.0))
    expected = 0.5 + (0.35 + 0.85)  # L1 action size + metres outside the box, summed
    assert torch.allclose(cost(predicted, goal, actions, start), torch.full((4,), expected))


def test_action_space_projection():
    space = ActionSpace(ActionBounds(translation_max=0.1, translation_l1=0.075, gripper_snap=0.25))
    actions = torch.tensor([[0.1, 0.1, -0.1, 0.3, 0.3, 0.3, 0.1], [0.01, 0.0, 0.0, 0, 0, 0, 0.9]])
    projected = space.project(actions)
    assert torch.allclose(projected[0, :3].abs().sum(), torch.tensor(0.075))
    assert torch.all(projected[:, 3:6] == 0)  # rotation not searched
    assert projected[0, 6] == 0 and projected[1, 6] == pytest.approx(0.75)  # snap and clip
    assert torch.equal(projected[1, :3], actions[1, :3])  # inside the ball: unchanged
    assert torch.allclose(space.project(projected), projected)


def test_l1_projection_is_the_nearest_point_of_the_ball():
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(200, 3, generator=generator) * 0.1
    projected = project_l1_ball(vectors, 0.075)
    assert bool((projected.abs().sum(-1) <= 0.075 + 1e-6).all())
    candidates = project_l1_ball(projected + 0.01 * torch.randn(200, 3, generator=generator), 0.075)
    # No other point of the ball is closer to the original vector.
    assert bool(
        ((vectors - projected).norm(dim=-1) <= (vectors - candidates).norm(dim=-1) + 1e-6).all()
    )


def test_colored_noise_is_unit_variance_and_correlated_in_time():
    generator = torch.Generator().manual_seed(0)
    noise = colored_noise(4000, 8, 2.0, generator, torch.device("cpu"))
    assert noise.shape == (4000, 8, 7)
    assert abs(float(noise.std()) - 1.0) < 0.05
    lag_one = float((noise[:, 1:] * noise[:, :-1]).mean())
    assert lag_one > 0.5  # brown noise: consecutive steps move together
    assert colored_noise(5, 1, 2.0, generator, torch.device("cpu")).shape == (5, 1, 7)


def test_icem_population_decays_but_keeps_room_for_the_elites():
    sizes = population_sizes(ActorConfig(samples=100, iterations=6, elites=10, population_decay=2))
    assert sizes == [100, 50, 25, 20, 20, 20]
