"""What every actor shares: the planning ``Problem`` (score action sequences, count predictor
evaluations, chunk the batch after a CUDA out-of-memory error), the ``ActionSpace`` (bounds,
projection, initial std) and the ``ActorResult``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from planner.config import ActionBounds, ActorConfig
from planner.cost import Cost
from planner.protocol import LatentWorldModel
from robots.franka import ACTION_DIM, GRIPPER, POS, ROT


@dataclass
class ActorResult:
    """What an actor returns.

    Attributes:
        actions: [H, 7] the planned sequence (inside the action bounds).
        energy: [] energy of ``actions`` (a 0-d tensor: no host sync inside the actor).
        elites: [K, H, 7] the final elite sequences, where the actor has them.
    """

    actions: torch.Tensor
    energy: torch.Tensor
    elites: torch.Tensor | None = None


class OutOfMemoryWarning(RuntimeWarning):
    """The world model ran out of GPU memory; sequences are now scored in smaller chunks."""


@dataclass
class EvaluationBatch:
    """How many sequences one world-model call may score.

    ``limit`` is None (everything at once) until a call raises ``torch.cuda.OutOfMemoryError``;
    then the chunk is halved until it fits (down to 1), a warning names the new size, and the
    size is kept for later calls (the planner owns one of these for its lifetime).
    """

    limit: int | None = None

    def score(
        self, score: Callable[[torch.Tensor], torch.Tensor], actions: torch.Tensor
    ) -> torch.Tensor:
        """Energies [S] of ``actions`` [S, H, 7] by ``score``, chunked along S when needed.

        With autograd on, the result keeps the graph of every chunk (``torch.cat`` is
        differentiable), so its gradient equals the unchunked one; but all chunks' graphs then
        live until the caller's backward: to bound that memory too, use ``map`` with a
        function that does its own backward per chunk (``Problem.evaluate_with_grad``).
        """
        return self._chunked(lambda part: (score(part),), actions)[0]

    def map(
        self,
        function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """``function`` of ``actions`` [S, H, 7], chunked along S when needed.

        Args:
            function: actions [s, H, 7] -> tensors, each [s, ...] (row i from sequence i).
            actions: [S, H, 7].

        Returns:
            the tensors of ``function``, each [S, ...]: over chunks, concatenated along dim 0.
        """
        return self._chunked(function, actions)

    def _chunked(
        self,
        function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        actions: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """``map``; the warning points at the actor (actor -> Problem -> score/map -> here)."""
        samples = actions.shape[0]
        size = samples if self.limit is None else max(1, min(self.limit, samples))
        while True:
            try:
                if size >= samples:
                    outputs = function(actions)
                else:
                    parts = [function(part) for part in actions.split(size)]
                    outputs = tuple(torch.cat(column) for column in zip(*parts, strict=True))
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
            else:
                break
            size //= 2  # outside the handler: the failed attempt's tensors are released
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if size < samples and (self.limit is None or size < self.limit):
            self.limit = size
            warnings.warn(
                f"world model ran out of GPU memory scoring {samples} sequences at once; "
                f"scoring them in chunks of {size} from now on (slower)",
                OutOfMemoryWarning,
                stacklevel=4,
            )
        return outputs


@dataclass
class Problem:
    """One planning problem: reach ``goal_latent`` from (``latent``, ``state``).

    ``evaluate`` (and ``evaluate_with_grad`` for gradient MPC) are the only ways actors score
    sequences, so ``evaluations`` (predictor frame evaluations: sequences x horizon steps per
    rollout) and ``trace`` are complete.

    Attributes:
        world_model, cost: what scores a sequence.
        latent: [1, N, D] current latent. state: [1, 7] current end-effector state.
        goal_latent: [1, N, D].
        goal_state: [1, 7] the goal state read off ``goal_latent`` by the world model's readout
            (only when the cost has a readout term), else None.
        subgoal_state: [1, 7] in the hierarchical mode, the state the subgoal generator proposes
            ``subgoal_ahead`` steps ahead, its gripper an intent (1 closed, 0 open); else None.
        subgoal_ahead: those steps (0 outside the hierarchical mode).
        evaluations: predictor evaluations so far.
        trace: (evaluations so far, lowest energy of that call as a 0-d tensor) per call.
        batch: the chunk size for world-model calls (shared across problems by the planner).
    """

    world_model: LatentWorldModel
    cost: Cost
    latent: torch.Tensor
    state: torch.Tensor
    goal_latent: torch.Tensor
    evaluations: int = 0
    trace: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    batch: EvaluationBatch = field(default_factory=EvaluationBatch)
    goal_state: torch.Tensor | None = None
    subgoal_state: torch.Tensor | None = None
    subgoal_ahead: int = 0

    def evaluate(self, actions: torch.Tensor) -> torch.Tensor:
        """Energies [S] of action sequences [S, H, 7] (differentiable if autograd is on).

        A NaN energy (the model predicted NaN) becomes +inf: such a sequence ranks last
        instead of poisoning the actors' comparisons (``min``/``argmin`` propagate NaN).
        """
        samples, horizon = actions.shape[:2]
        energy = self.batch.score(self._score, actions)
        self.evaluations += samples * horizon
        self.trace.append((self.evaluations, energy.detach().min()))
        return energy

    def evaluate_with_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and their gradient, one forward + backward per chunk.

        The same energies as ``evaluate`` and the gradient that ``evaluate(actions).sum()``
        would give, but when the batch is chunked after a CUDA out-of-memory error each
        chunk's graph is freed before the next chunk runs, and an out-of-memory error in the
        backward is caught too (with ``evaluate`` the graphs of all chunks live until the
        caller's backward, so chunking would barely lower the peak memory of gradient MPC).

        Args:
            actions: [S, H, 7] (detached here: the gradient is returned, not accumulated).

        Returns:
            (energies [S] detached, gradient [S, H, 7] of their sum w.r.t. ``actions``).
        """
        samples, horizon = actions.shape[:2]
        energy, grad = self.batch.map(self._score_and_grad, actions.detach())
        self.evaluations += samples * horizon
        self.trace.append((self.evaluations, energy.min()))
        return energy, grad

    def _score_and_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(energies [S] detached, d sum(energies) / d actions [S, H, 7]) in one call."""
        with torch.enable_grad():
            leaf = actions.detach().requires_grad_(True)
            energy = self._score(leaf)
            (grad,) = torch.autograd.grad(energy.sum(), leaf, allow_unused=True)
        if grad is None:  # the energy does not depend on the actions
            grad = torch.zeros_like(leaf)
        return energy.detach(), grad

    def _score(self, actions: torch.Tensor) -> torch.Tensor:
        """Energies [S] of actions [S, H, 7] in one world-model call; NaN becomes +inf."""
        samples = actions.shape[0]
        latent = self.latent.expand(samples, -1, -1)
        state = self.state.expand(samples, -1)
        predicted = self.world_model.rollout(latent, state, actions)
        energy = self.cost(predicted, self.goal_latent, actions, self.state, self.goal_state)
        return torch.where(torch.isnan(energy), torch.inf, energy)


def project_l1_ball(vectors: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of vectors [..., n] onto the L1 ball of ``radius`` (Duchi et al.
    2008), batched with a sort: points inside are unchanged."""
    magnitude = vectors.abs()
    sorted_magnitude = magnitude.sort(dim=-1, descending=True).values
    excess = sorted_magnitude.cumsum(dim=-1) - radius
    index = torch.arange(1, vectors.shape[-1] + 1, device=vectors.device, dtype=vectors.dtype)
    support = (sorted_magnitude - excess / index > 0).sum(dim=-1, keepdim=True).clamp_min(1)
    threshold = excess.gather(-1, support - 1) / support.to(vectors.dtype)
    projected = vectors.sign() * (magnitude - threshold).clamp_min(0.0)
    inside = magnitude.sum(dim=-1, keepdim=True) <= radius
    return torch.where(inside, vectors, projected)


def snap_gripper(actions: torch.Tensor, threshold: float) -> torch.Tensor:
    """Actions [..., 7] with |Δgripper| < ``threshold`` set to 0 (unchanged when it is 0)."""
    if threshold <= 0:
        return actions
    gripper = actions[..., GRIPPER : GRIPPER + 1]
    gripper = torch.where(gripper.abs() < threshold, 0.0, gripper)
    return torch.cat((actions[..., :GRIPPER], gripper), dim=-1)


class ActionSpace:
    """The box (and optional L1 ball) actions live in; dimensions with bound 0 are held at 0."""

    def __init__(self, bounds: ActionBounds, device: torch.device | str = "cpu") -> None:
        self.bounds = bounds
        limit = torch.zeros(ACTION_DIM)
        limit[POS] = bounds.translation_max
        if bounds.translation_l1 is not None:
            limit[POS] = min(bounds.translation_max, bounds.translation_l1)
        limit[ROT] = bounds.rotation_max
        limit[GRIPPER] = bounds.gripper_max
        self.limit = limit.to(device)  # [7] per-dimension bound
        self.searched = self.limit > 0  # [7]

    def project(self, actions: torch.Tensor) -> torch.Tensor:
        """Project actions [..., 7] into the bounds (differentiable almost everywhere)."""
        actions = torch.maximum(torch.minimum(actions, self.limit), -self.limit)
        if self.bounds.translation_l1 is not None:
            translation = project_l1_ball(actions[..., POS], self.bounds.translation_l1)
            actions = torch.cat((translation, actions[..., 3:]), dim=-1)
        return snap_gripper(actions, self.bounds.gripper_snap)

    def finish(self, actions: torch.Tensor) -> torch.Tensor:
        """The plan an actor returns, [..., 7]: ``project``ed, then the gripper changes below
        ``bounds.final_gripper_snap`` set to 0 (the release snaps only its final mean)."""
        return snap_gripper(self.project(actions), self.bounds.final_gripper_snap)

    def initial_std(self, config: ActorConfig) -> torch.Tensor:
        """[7] sampling std at the start of a plan, 0 on dimensions that are not searched."""
        std = torch.zeros(ACTION_DIM, device=self.limit.device)
        std[POS] = config.init_std_translation
        std[ROT] = config.init_std_rotation
        std[GRIPPER] = config.init_std_gripper
        return torch.where(self.searched, std, 0.0)

    def clamp_std(self, std: torch.Tensor, min_std: float) -> torch.Tensor:
        """Floor the std [..., 7] of searched dimensions at ``min_std``; others stay 0."""
        return torch.where(self.searched, std.clamp_min(min_std), 0.0)

    def uniform(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Actions [*shape, 7] drawn uniformly in the bounds box, then projected."""
        unit = torch.rand((*shape, ACTION_DIM), generator=generator, device=self.limit.device)
        return self.project((2.0 * unit - 1.0) * self.limit)


def shift(sequence: torch.Tensor) -> torch.Tensor:
    """Receding-horizon warm start: drop the executed first step, repeat zeros at the end.

    Args:
        sequence: [..., H, 7]. Returns: [..., H, 7].
    """
    return torch.cat((sequence[..., 1:, :], torch.zeros_like(sequence[..., :1, :])), dim=-2)


def gaussian(
    mean: torch.Tensor, std: torch.Tensor, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Samples [S, H, 7] from N(mean [H, 7], std [H, 7]) with the planner's generator."""
    noise = torch.randn(
        (samples, *mean.shape), generator=generator, device=mean.device, dtype=mean.dtype
    )
    return mean + std * noise


def elite_moments(elites: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std [H, 7] of elites [K, H, 7]; the std divides by K - 1 when ``unbiased``
    (the release's ``torch.std``), else by K."""
    return elites.mean(dim=0), elites.std(dim=0, unbiased=unbiased)


def refit(
    space: ActionSpace,
    mean: torch.Tensor,
    std: torch.Tensor,
    fitted_mean: torch.Tensor,
    fitted_std: torch.Tensor,
    config: ActorConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The momentum refit every sampling actor shares (CEM, iCEM, MPPI, the release):
    new = momentum * old + (1 - momentum) * fitted, for the mean and the std; the std of
    searched dimensions is then floored at ``config.min_std`` (unsearched ones stay 0).

    Args:
        mean, std: [H, 7] the current sampling distribution. fitted_mean, fitted_std: [H, 7]
            what the iteration's elites (or weights) fitted. config: momentum and min_std.

    Returns:
        (mean [H, 7], std [H, 7]) to sample the next iteration from.
    """
    keep = config.momentum
    new_mean = keep * mean + (1 - keep) * fitted_mean
    new_std = space.clamp_std(keep * std + (1 - keep) * fitted_std, config.min_std)
    return new_mean, new_std


def pick_final(
    final: str,
    mean: torch.Tensor,
    best_actions: torch.Tensor,
    problem: Problem,
    space: ActionSpace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequence an actor returns and its energy: the mean or the best sequence seen,
    through ``space.finish`` (bounds, final gripper snap), scored once more.

    Args:
        final: "mean" or "best". mean, best_actions: [H, 7].

    Returns:
        ([H, 7] actions, [] energy).
    """
    actions = space.finish(mean if final == "mean" else best_actions)
    with torch.no_grad():
        energy = problem.evaluate(actions.unsqueeze(0))[0]
    return actions, energy


def keep_best(
    best_actions: torch.Tensor,
    best_energy: torch.Tensor,
    actions: torch.Tensor,
    energy: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running best without a host sync.

    Args:
        best_actions: [H, 7]; best_energy: [] (inf at the start).
        actions: [S, H, 7] newly scored sequences; energy: [S] their energies.

    Returns:
        (best_actions [H, 7], best_energy []) over both.
    """
    index = energy.argmin()
    better = energy[index] < best_energy
    return torch.where(better, actions[index], best_actions), torch.minimum(
        energy[index], best_energy
    )
