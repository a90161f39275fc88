"""CEM followed by a few projected gradient steps on its elites (and mean)."""

from __future__ import annotations

import torch

from planner.actors.base import ActionSpace, ActorResult, Problem, pick_final
from planner.actors.cem import CEM
from planner.actors.gd import gradient_refine
from planner.config import ActorConfig


class CEMThenGradient:
    """CEM (reads what ``CEM`` reads) to find the basin, then ``steps`` Adam steps
    (``learning_rate``) on the K elites plus the CEM plan, in one batch; returns the best."""

    def __init__(self, config: ActorConfig, space: ActionSpace) -> None:
        self.cem = CEM(config, space)
        self.config = config
        self.space = space

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self.cem.reset()

    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Run CEM, refine its elites by gradient descent; see class docstring."""
        sampled = self.cem.plan(problem, generator)
        start = torch.cat((sampled.actions.unsqueeze(0), sampled.elites))  # [K + 1, H, 7]
        best, best_energy = gradient_refine(
            problem, self.space, start, self.config.steps, self.config.learning_rate
        )
        # Refinement never returns something worse than the CEM plan (it is restart 0).
        actions, energy = pick_final("best", best, best, problem, self.space)
        self.cem.remember(actions)
        return ActorResult(actions=actions, energy=energy, elites=sampled.elites)
