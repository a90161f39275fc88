"""CUDA out-of-memory fallback of ``Problem.evaluate``: when the world model cannot score all
sequences at once, they are scored in halving chunks, a warning names the chunk size once, the
size is kept for later calls, and the energies equal the unchunked ones. Runs on CPU by fault
injection around a real model (``torch.cuda.OutOfMemoryError`` exists in CPU builds)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import world_model
from planner import Cost, Planner
from planner.actors.base import EvaluationBatch, OutOfMemoryWarning, Problem
from world_model.state_model import StateWorldModel

START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
GOAL_STATE = START + np.array([0.04, -0.02, 0.01, 0, 0, 0.1, 0], np.float32)
IMAGE = np.zeros((32, 32, 3), np.uint8)


class OutOfMemoryAbove:
    """A real world model whose ``rollout`` raises CUDA OOM for batches larger than ``limit``,
    as a GPU with too little free memory would; records the batch sizes it was asked for."""

    def __init__(self, model, limit: int) -> None:
        self.model, self.limit = model, limit
        self.num_patches, self.latent_dim = model.num_patches, model.latent_dim
        self.device = model.device
        self.batches: list[int] = []

    def encode(self, images, states=None) -> torch.Tensor:
        return self.model.encode(images, states)

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        batch = max(z0.shape[0], s0.shape[0], actions.shape[0])
        self.batches.append(batch)
        if batch > self.limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {batch} sequences (injected)"
            )
        return self.model.rollout(z0, s0, actions)


@pytest.fixture(scope="module")
def tiny():
    return world_model.build("tiny", device="cpu", seed=0)


def make_problem(model, batch: EvaluationBatch | None = None) -> Problem:
    state = torch.from_numpy(START).unsqueeze(0)
    rng = np.random.default_rng(0)
    image, goal = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    goal_state = torch.from_numpy(GOAL_STATE).unsqueeze(0)
    return Problem(
        model,
        Cost(),
        model.encode(image, state),
        state,
        model.encode(goal, goal_state),
        batch=batch or EvaluationBatch(),
    )


def oom_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, OutOfMemoryWarning)]


def test_chunked_energies_equal_unchunked_and_the_chunk_size_is_kept(tiny):
    actions = 0.05 * torch.randn(12, 2, 7, generator=torch.Generator().manual_seed(0))
    reference = make_problem(tiny).evaluate(actions)

    faulty = OutOfMemoryAbove(tiny, limit=5)
    problem = make_problem(faulty)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunked = problem.evaluate(actions)
        faulty.batches.clear()
        again = problem.evaluate(actions)
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, reference, rtol=1e-5, atol=1e-6)
    assert oom_warnings(caught) == [
        "world model ran out of GPU memory scoring 12 sequences at once; "
        "scoring them in chunks of 3 from now on (slower)"
    ]  # 12 -> 6 -> 3: one warning, with the size that fits
    assert problem.batch.limit == 3 and faulty.batches == [3] * 4  # no retries the second time
    assert problem.evaluations == 2 * 12 * 2  # counted once per sequence, not per attempt
    assert len(problem.trace) == 2


def test_chunked_gradients_equal_unchunked():
    """Gradient MPC differentiates through ``evaluate``: chunking must not change the gradient."""
    start = 0.05 * torch.randn(6, 2, 7, generator=torch.Generator().manual_seed(1))
    state_model = StateWorldModel(num_patches=4, latent_dim=8, seed=0)
    gradients = []
    for model in (state_model, OutOfMemoryAbove(state_model, limit=2)):
        actions = start.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfMemoryWarning)
            make_problem(model).evaluate(actions).sum().backward()
        gradients.append(actions.grad)
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-4, atol=1e-7)


def test_out_of_memory_even_one_at_a_time_is_raised(tiny):
    problem = make_problem(OutOfMemoryAbove(tiny, limit=0))
    with (
        pytest.raises(torch.cuda.OutOfMemoryError, match="injected"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        problem.evaluate(torch.zeros(8, 2, 7))
    assert oom_warnings(caught) == []  # no size fitted: nothing to announce
    assert problem.batch.limit is None and problem.evaluations == 0


@pytest.mark.parametrize("preset", ["cem_release", "icem", "gd", "mppi"])
def test_the_planner_falls_back_warns_once_and_plans_the_same(preset):
    overrides = ["actor.samples=32", "actor.elites=4", "actor.iterations=2"]
    overrides += ["actor.restarts=8", "actor.steps=3"]  # gd: 8 restarts in one batch
    model = StateWorldModel(num_patches=4, latent_dim=8, seed=0)
    faulty = OutOfMemoryAbove(model, limit=3)
    obs, goal = {"image": IMAGE, "state": START}, {"image": IMAGE, "state": GOAL_STATE}
    reference = Planner.from_config(preset, model, device="cpu", overrides=overrides)
    fallback = Planner.from_config(preset, faulty, device="cpu", overrides=overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans = [(reference.plan(obs, goal), fallback.plan(obs, goal)) for _ in range(3)]
    assert len(oom_warnings(caught)) == 1 and fallback.evaluation_batch.limit == 2
    assert reference.evaluation_batch.limit is None
    for expected, got in plans:
        np.testing.assert_allclose(got.actions, expected.actions, rtol=1e-5, atol=1e-6)
        assert got.energy == pytest.approx(expected.energy, rel=1e-5, abs=1e-6)
        assert got.evaluations == expected.evaluations
