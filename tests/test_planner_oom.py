"""CUDA out-of-memory fallback of ``Problem.evaluate``: when the world model cannot score all
sequences at once, they are scored in halving chunks, a warning names the chunk size once, the
size is kept for later calls, and the energies equal the unchunked ones; with autograd on the
gradients too, and gradient MPC (one backward per chunk) also survives an OOM in the backward.
Runs on CPU by fault injection around a real model (``torch.cuda.OutOfMemoryError`` exists in
CPU builds)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import world_model
from planner import Cost, Planner
from planner.actors.base import ActionSpace, EvaluationBatch, OutOfMemoryWarning, Problem
from planner.actors.gd import gradient_refine
from planner.config import ActionBounds
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


class OutOfMemoryInBackwardAbove(OutOfMemoryAbove):
    """A real world model whose rollout fits but whose backward raises CUDA OOM for batches
    larger than ``limit`` (a backward needs more memory than its forward)."""

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        batch = max(z0.shape[0], s0.shape[0], actions.shape[0])
        self.batches.append(batch)
        return FailingBackward.apply(self.model.rollout(z0, s0, actions), batch > self.limit)


class FailingBackward(torch.autograd.Function):
    """Identity whose backward raises CUDA OOM when ``fail``."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, fail: bool) -> torch.Tensor:
        ctx.fail = fail
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if ctx.fail:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory in backward (injected)")
        return grad, None


def actions_grad(problem: Problem, start: torch.Tensor) -> torch.Tensor:
    """d sum(energies) / d actions through ``Problem.evaluate`` (autograd on)."""
    actions = start.clone().requires_grad_(True)
    with torch.enable_grad():
        problem.evaluate(actions).sum().backward()
    return actions.grad


def test_chunked_score_keeps_the_graph_of_every_chunk(tiny):
    """``EvaluationBatch.score`` with autograd on (the ViT world model): the concatenated
    chunks' energies are differentiable and give the unchunked gradient."""
    start = 0.05 * torch.randn(5, 2, 7, generator=torch.Generator().manual_seed(2))
    reference = actions_grad(make_problem(tiny), start)
    faulty = OutOfMemoryAbove(tiny, limit=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunked = actions_grad(make_problem(faulty), start)
    assert len(oom_warnings(caught)) == 1 and faulty.batches == [5, 2, 2, 1]  # 5 -> 2
    assert reference.abs().max() > 1e-3  # a real gradient, not zeros
    torch.testing.assert_close(chunked, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("wrapper", [OutOfMemoryAbove, OutOfMemoryInBackwardAbove])
def test_evaluate_with_grad_chunks_forward_and_backward(tiny, wrapper):
    """One forward + backward per chunk: same energies and gradient as ``evaluate`` unchunked,
    an OOM raised in the backward falls back too, and ``evaluations`` counts each sequence
    once."""
    start = 0.05 * torch.randn(6, 2, 7, generator=torch.Generator().manual_seed(3))
    expected_grad = actions_grad(make_problem(tiny), start)
    with torch.no_grad():
        expected_energy = make_problem(tiny).evaluate(start)
    faulty = wrapper(tiny, limit=3)
    problem = make_problem(faulty)
    actions = start.clone().requires_grad_(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        energy, grad = problem.evaluate_with_grad(actions)
    assert oom_warnings(caught) == [
        "world model ran out of GPU memory scoring 6 sequences at once; "
        "scoring them in chunks of 3 from now on (slower)"
    ]
    assert problem.batch.limit == 3 and faulty.batches == [6, 3, 3]
    assert actions.grad is None and not energy.requires_grad  # returned, not accumulated
    torch.testing.assert_close(energy, expected_energy, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-6)
    assert problem.evaluations == 6 * 2 and len(problem.trace) == 1


@pytest.mark.parametrize("wrapper", [OutOfMemoryAbove, OutOfMemoryInBackwardAbove])
def test_gradient_mpc_plans_through_out_of_memory(tiny, wrapper):
    """``gradient_refine`` (gd, cem+gd) on the ViT world model: an OOM above 2 sequences, in
    the forward or the backward, gives the plan of the unlimited model, with one warning."""
    space = ActionSpace(ActionBounds())
    start = space.uniform((4, 2), torch.Generator().manual_seed(4))
    reference = gradient_refine(make_problem(tiny), space, start, steps=3, learning_rate=0.01)
    faulty = wrapper(tiny, limit=2)
    problem = make_problem(faulty)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        best, energy = gradient_refine(problem, space, start, steps=3, learning_rate=0.01)
    assert len(oom_warnings(caught)) == 1 and problem.batch.limit == 2
    assert not torch.equal(best, space.project(start)[0])  # Adam moved the plan
    torch.testing.assert_close(best, reference[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(energy, reference[1], rtol=1e-5, atol=1e-6)
    assert problem.evaluations == 4 * 2 * 4  # 3 steps + the final score, once per sequence
