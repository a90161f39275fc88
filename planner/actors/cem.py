"""Cross-entropy method, as in the V-JEPA 2-AC paper (``cem_paper``) and release
(``cem_release``): sample around a Gaussian, keep the top-k, refit mean and std."""

from __future__ import annotations

import torch

from planner.actors.base import (
    ActionSpace,
    ActorResult,
    Problem,
    elite_moments,
    gaussian,
    keep_best,
    pick_final,
    refit,
    shift,
)
from planner.config import ActorConfig


class CEM:
    """CEM over [H, 7] action sequences.

    Reads: horizon, samples, iterations, elites, momentum, init_std_*, min_std,
    unbiased_std, final, warm_start. The mean starts at 0 (or the previous plan shifted by one
    step when ``warm_start``); the std at ``init_std_*``; each iteration samples, projects into
    the bounds, scores, keeps the top-K and refits (``refit``: blended with the previous value
    by ``momentum``, release 0.15). The returned plan goes through ``ActionSpace.finish``.
    With ``configs/planner/cem_release.yaml`` this is the release's update rule exactly
    (``tests/test_cem_release.py`` pins it).
    """

    def __init__(self, config: ActorConfig, space: ActionSpace) -> None:
        self.config = config
        self.space = space
        self._prev_mean: torch.Tensor | None = None  # [H, 7] last plan, for the warm start

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self._prev_mean = None

    def remember(self, actions: torch.Tensor) -> None:
        """Make ``actions`` [H, 7] the plan the next warm start shifts."""
        self._prev_mean = actions

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Search the action sequence of lowest energy.

        Args:
            problem: what to score. generator: the planner's seeded RNG.

        Returns:
            ActorResult with actions [H, 7], its energy, and the final elites [K, H, 7].
        """
        cfg, space = self.config, self.space
        device = problem.latent.device
        mean = torch.zeros(cfg.horizon, 7, device=device)
        if cfg.warm_start and self._prev_mean is not None:
            mean = shift(self._prev_mean)
        std = space.initial_std(cfg).expand(cfg.horizon, 7)
        best_actions, best_energy = mean, torch.tensor(float("inf"), device=device)
        elites = mean.unsqueeze(0)
        for _ in range(cfg.iterations):
            actions = space.project(gaussian(mean, std, cfg.samples, generator))  # [S, H, 7]
            energy = problem.evaluate(actions)  # [S]
            elites = actions[torch.topk(energy, cfg.elites, largest=False).indices]  # [K, H, 7]
            fitted_mean, fitted_std = elite_moments(elites, cfg.unbiased_std)
            mean, std = refit(space, mean, std, fitted_mean, fitted_std, cfg)
            best_actions, best_energy = keep_best(best_actions, best_energy, actions, energy)
        actions, energy = pick_final(cfg.final, mean, best_actions, problem, space)
        self._prev_mean = actions
        return ActorResult(actions=actions, energy=energy, elites=elites)
