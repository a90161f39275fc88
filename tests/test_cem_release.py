"""``cem_release`` is the public V-JEPA 2-AC release's CEM update rule, step by step.

The reference below is written from the release's rule as docs (/work/shared VJEPA2_FACTS,
"Planning") state it, not from our actor: 400 samples, horizon 2, 10 iterations, top-10; the
mean starts at 0 and the std at 0.05 (translation) and 1.0 (gripper); each sample is clipped per
axis to ±0.05 (translation) and ±0.75 (gripper), rotation held at 0; the mean and the *unbiased*
std of the elites are blended with momentum 0.15; the plan is the final mean with gripper
changes below 0.25 set to 0 (only the mean is snapped). Both draw the same Gaussian noise from
the same seeded generator; every iteration's samples, and the plan, must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planner import Planner
from world_model.state_model import StateWorldModel

IMAGE = np.zeros((32, 32, 3), np.uint8)
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
SEARCHED = [0, 1, 2, 6]  # x, y, z, gripper: the release searches these, rotation stays 0
SAMPLES, HORIZON, ITERATIONS, TOP_K = 400, 2, 10, 10
MOMENTUM, MAX_NORM, GRIPPER_STD, GRIPPER_MAX, SNAP = 0.15, 0.05, 1.0, 0.75, 0.25


class RecordingModel(StateWorldModel):
    """The ground-truth-state model, keeping a copy of every action batch it rolls out."""

    def __init__(self) -> None:
        super().__init__(num_patches=8, latent_dim=16, seed=0)
        self.batches: list[torch.Tensor] = []

    def rollout(self, z0, s0, actions):
        self.batches.append(actions.detach().clone())
        return super().rollout(z0, s0, actions)


def release_cem(
    model: StateWorldModel, goal_state: np.ndarray, generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The release's CEM, plainly: returns (each iteration's samples [S, H, 7], the plan [H, 7])."""
    state = torch.from_numpy(START)[None]
    latent = model.encode(None, state)
    goal_latent = model.encode(None, torch.from_numpy(goal_state)[None])
    mean = torch.zeros(HORIZON, 4)
    std = torch.cat((torch.full((HORIZON, 3), MAX_NORM), torch.full((HORIZON, 1), GRIPPER_STD)), -1)
    sampled = []
    for _ in range(ITERATIONS):
        noise = torch.randn((SAMPLES, HORIZON, 7), generator=generator)[..., SEARCHED]
        searched = noise * std + mean
        searched[..., :3] = searched[..., :3].clamp(-MAX_NORM, MAX_NORM)
        searched[..., 3] = searched[..., 3].clamp(-GRIPPER_MAX, GRIPPER_MAX)
        actions = torch.zeros(SAMPLES, HORIZON, 7)
        actions[..., SEARCHED] = searched
        final = model.rollout(latent.expand(SAMPLES, -1, -1), state.expand(SAMPLES, -1), actions)
        energy = (final[:, -1] - goal_latent).abs().mean(dim=(-2, -1))  # the paper's energy
        elites = searched[energy.topk(TOP_K, largest=False).indices]
        mean = elites.mean(dim=0) * (1 - MOMENTUM) + mean * MOMENTUM
        std = elites.std(dim=0) * (1 - MOMENTUM) + std * MOMENTUM  # torch.std: unbiased
        sampled.append(actions)
    plan = torch.zeros(HORIZON, 7)
    plan[:, :3] = mean[:, :3]
    plan[:, 6] = torch.where(mean[:, 3].abs() < SNAP, 0.0, mean[:, 3])
    return sampled, plan


def goal_at(offset: list[float], gripper: float) -> np.ndarray:
    goal = START.copy()
    goal[:3] += np.asarray(offset, np.float32)
    goal[6] = gripper
    return goal


@pytest.mark.parametrize(
    ("offset", "gripper"),
    [([0.06, -0.05, 0.03], 0.6), ([0.02, 0.03, -0.01], 0.15)],
    ids=["gripper-closes", "gripper-snapped"],
)
def test_cem_release_matches_the_release_update_rule_step_by_step(offset, gripper):
    goal = goal_at(offset, gripper)
    model = RecordingModel()
    planner = Planner.from_config("cem_release", world_model=model, device="cpu")
    plan = planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": goal})
    generator = torch.Generator().manual_seed(planner.config.seed)
    reference_samples, reference_plan = release_cem(StateWorldModel(8, 16, 0), goal, generator)

    ours = model.batches[-(ITERATIONS + 1) :]  # the search's batches, then the plan scored once
    assert [tuple(batch.shape) for batch in ours[:-1]] == [(SAMPLES, HORIZON, 7)] * ITERATIONS
    for iteration, (mine, theirs) in enumerate(zip(ours[:-1], reference_samples, strict=True)):
        assert torch.allclose(mine, theirs, atol=1e-7, rtol=0), f"iteration {iteration} differs"
    assert torch.allclose(ours[-1][0], reference_plan, atol=1e-7, rtol=0)
    assert np.allclose(plan.actions, reference_plan.numpy(), atol=1e-7, rtol=0)
    if gripper < SNAP:
        assert np.all(plan.actions[:, 6] == 0.0)  # the final mean is snapped...
        unsnapped = ours[-2][..., 6].abs()
        assert bool(((unsnapped > 0) & (unsnapped < SNAP)).any())  # ...the samples are not
    else:
        assert plan.actions[0, 6] > SNAP


def test_our_variants_stay_available_as_named_options():
    """Snapping every sample, the 0.75 gripper std and the biased std are options, not gone."""
    goal = goal_at([0.02, 0.03, -0.01], 0.15)
    ours = ["actor.init_std_gripper=0.75", "actor.unbiased_std=false", "bounds.gripper_snap=0.25"]
    batches = {}
    for name, overrides in (("release", []), ("ours", ours)):
        model = RecordingModel()
        planner = Planner.from_config("cem_release", model, "cpu", overrides=overrides)
        planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": goal})
        batches[name] = torch.cat([batch[..., 6].flatten() for batch in model.batches])
    small = {name: ((g.abs() > 0) & (g.abs() < SNAP)).sum().item() for name, g in batches.items()}
    assert small["ours"] == 0 < small["release"]
    assert not torch.equal(batches["ours"], batches["release"])
