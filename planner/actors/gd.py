"""Gradient MPC: Adam on the action sequence through the differentiable rollout, several
restarts in one batch, projected back onto the action bounds after every step."""

from __future__ import annotations

import torch

from planner.actors.base import ActionSpace, ActorResult, Problem, keep_best, pick_final, shift
from planner.config import ActorConfig


def gradient_refine(
    problem: Problem,
    space: ActionSpace,
    start: torch.Tensor,
    steps: int,
    learning_rate: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected Adam descent of the energy from R starting sequences at once. The step size
    follows a cosine decay to 0: Adam's steps have a roughly constant size, so without the
    decay it would circle the minimum of the (non-smooth, L1) energy at ``learning_rate``.

    Args:
        problem: what to score (each step costs R x H predictor evaluations + a backward,
            through ``Problem.evaluate_with_grad``: chunked after a CUDA out-of-memory error).
        space: bounds to project onto after each step.
        start: [R, H, 7] starting sequences.
        steps: Adam steps. learning_rate: Adam step size.

    Returns:
        (best sequence seen [H, 7], its energy []), both detached.
    """
    actions = space.project(start.detach()).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([actions], lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    best_actions = actions.detach()[0]
    best_energy = torch.tensor(float("inf"), device=actions.device)
    for _ in range(steps):
        # Restarts are independent: the gradient of the summed energy is each one's gradient
        # (a backward per chunk of restarts when a CUDA out-of-memory error forced chunks).
        energy, grad = problem.evaluate_with_grad(actions)  # [R], [R, H, 7]
        actions.grad = grad
        best_actions, best_energy = keep_best(best_actions, best_energy, actions.detach(), energy)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            actions.copy_(space.project(actions))
    with torch.no_grad():
        energy = problem.evaluate(actions)
    return keep_best(best_actions, best_energy, actions.detach(), energy)


class GradientDescent:
    """Gradient MPC over [H, 7] action sequences.

    Reads: horizon, restarts, steps, learning_rate, warm_start. Restart 0 starts at zero (or
    at the previous plan shifted by one step when ``warm_start``); the others uniformly at
    random inside the bounds. Returns the best sequence seen.
    """

    def __init__(self, config: ActorConfig, space: ActionSpace) -> None:
        self.config = config
        self.space = space
        self._prev_plan: torch.Tensor | None = None  # [H, 7]

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self._prev_plan = None

    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Descend the energy from ``restarts`` starts; see class docstring."""
        cfg = self.config
        device = problem.latent.device
        first = torch.zeros(1, cfg.horizon, 7, device=device)
        if cfg.warm_start and self._prev_plan is not None:
            first = shift(self._prev_plan).unsqueeze(0)
        others = self.space.uniform((cfg.restarts - 1, cfg.horizon), generator)
        start = torch.cat((first, others))  # [R, H, 7]
        best, _ = gradient_refine(problem, self.space, start, cfg.steps, cfg.learning_rate)
        actions, energy = pick_final("best", best, best, problem, self.space)
        self._prev_plan = actions
        return ActorResult(actions=actions, energy=energy)
