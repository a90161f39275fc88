"""MPPI: sample around the mean, then move the mean to the exponentially weighted average of
the samples (weights exp(-energy / temperature)), as in TD-MPC2's planner."""

from __future__ import annotations

import torch

from planner.actors.base import (
    ActionSpace,
    ActorResult,
    Problem,
    gaussian,
    keep_best,
    pick_final,
    refit,
    shift,
)
from planner.config import ActorConfig


class MPPI:
    """MPPI over [H, 7] action sequences.

    Reads: horizon, samples, iterations, temperature, momentum, init_std_*, min_std, final,
    warm_start. The energies are centred on the population's best and divided by their
    standard deviation before weighting, so ``temperature`` is in units of that spread and
    one value works across models whose energies differ in scale. The std is refit to the
    weighted spread of the samples (floored at ``min_std``).
    """

    def __init__(self, config: ActorConfig, space: ActionSpace) -> None:
        self.config = config
        self.space = space
        self._prev_mean: torch.Tensor | None = None  # [H, 7]

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self._prev_mean = None

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Path-integral updates of a Gaussian over sequences; see class docstring."""
        cfg, space = self.config, self.space
        device = problem.latent.device
        mean = torch.zeros(cfg.horizon, 7, device=device)
        if cfg.warm_start and self._prev_mean is not None:
            mean = shift(self._prev_mean)
        std = space.initial_std(cfg).expand(cfg.horizon, 7)
        best_actions, best_energy = mean, torch.tensor(float("inf"), device=device)
        for _ in range(cfg.iterations):
            actions = space.project(gaussian(mean, std, cfg.samples, generator))  # [S, H, 7]
            energy = problem.evaluate(actions)  # [S]
            spread = energy.std().clamp_min(1e-12)
            weight = torch.softmax(-(energy - energy.min()) / (spread * cfg.temperature), dim=0)
            weight = weight[:, None, None]
            fitted_mean = (weight * actions).sum(dim=0)
            fitted_std = (weight * (actions - fitted_mean) ** 2).sum(dim=0).sqrt()
            mean, std = refit(space, mean, std, fitted_mean, fitted_std, cfg)
            best_actions, best_energy = keep_best(best_actions, best_energy, actions, energy)
        actions, energy = pick_final(cfg.final, mean, best_actions, problem, space)
        self._prev_mean = actions
        return ActorResult(actions=actions, energy=energy)
