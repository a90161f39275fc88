"""Amortised iCEM (the ``fast`` preset): a learned policy proposes the plan, a small iCEM search
refines it, and the full iCEM search runs only when random probes find something better."""

from __future__ import annotations

import torch

from planner.actors.base import ActionSpace, ActorResult, Problem, pick_final
from planner.actors.icem import Search, iterate, population_sizes
from planner.config import ActorConfig
from planner.policy import ProposalPolicy, check_fits, load_policy
from planner.protocol import LatentWorldModel


class Amortised:
    """iCEM seeded by a proposal.

    Reads what ``ICEM`` reads (the full search: samples, iterations, elites, ...) plus policy,
    refine_samples, refine_iterations, refine_std, probes. Each plan:

    1. scores the policy's proposal (or, without a policy, the previous plan's first action
       repeated: the hand keeps moving as it did), the previous plan itself, and ``probes``
       sequences drawn from the full search's initial distribution (zero mean, ``init_std_*``);
    2. runs ``refine_iterations`` iCEM iterations of ``refine_samples`` around the best of the
       proposals (std ``refine_std`` x ``init_std_*``), the proposals carried as elites;
    3. if a probe scored lower than the refined plan, the proposal was in the wrong basin: the
       full iCEM search runs from the probes' distribution, the refined elites carried in, so
       its answer is never worse than the refinement's.

    Shapes depend only on the config, so a plan costs a fixed number of evaluations on either
    path: 1 + (1 with a previous plan) + probes + refine_samples x refine_iterations (+ 1 for
    the mean), plus the full search's when it falls back. ``fell_back`` counts the fallbacks.
    """

    def __init__(
        self,
        config: ActorConfig,
        space: ActionSpace,
        world_model: LatentWorldModel | None = None,
    ) -> None:
        self.config = config
        self.space = space
        self.policy: ProposalPolicy | None = None
        if config.policy not in (None, "", "none"):
            self.policy = load_policy(config.policy, device=space.limit.device)
            if world_model is not None:
                check_fits(
                    self.policy, world_model.num_patches, world_model.latent_dim, config.horizon
                )
        self.full_sizes = population_sizes(config)
        self.refine_sizes = [config.refine_samples] * config.refine_iterations
        self.plans = 0
        self.fell_back = 0
        self._prev_plan: torch.Tensor | None = None  # [H, 7]

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self._prev_plan = None

    def propose(self, problem: Problem) -> torch.Tensor:
        """Candidate sequences [P, H, 7] inside the bounds: the policy's proposal (or the
        previous first action held for H steps) and the previous plan, when there is one."""
        cfg, space = self.config, self.space
        candidates = []
        if self.policy is not None:
            proposal = self.policy(problem.latent, problem.goal_latent, problem.state)
            candidates.append(proposal[0, : cfg.horizon])
        elif self._prev_plan is not None:
            candidates.append(self._prev_plan[:1].expand(cfg.horizon, -1))
        if self._prev_plan is not None:
            candidates.append(self._prev_plan)
        if not candidates:
            candidates.append(torch.zeros(cfg.horizon, 7, device=space.limit.device))
        return space.project(torch.stack(candidates))

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Propose, refine, fall back when a probe wins; see class docstring."""
        cfg, space = self.config, self.space
        device = problem.latent.device
        init_std = space.initial_std(cfg).expand(cfg.horizon, 7)
        zero = torch.zeros(cfg.horizon, 7, device=device)
        candidates = self.propose(problem)  # [P, H, 7]
        probes = space.project(
            zero
            + init_std
            * torch.randn((cfg.probes, cfg.horizon, 7), generator=generator, device=device)
        )
        energy = problem.evaluate(torch.cat((candidates, probes)))
        candidate_energy, probe_energy = energy[: len(candidates)], energy[len(candidates) :]
        start = candidates[candidate_energy.argmin()]
        search = Search.start(start, init_std * cfg.refine_std, candidates, candidate_energy)
        search = iterate(problem, space, cfg, self.refine_sizes, search, generator)
        self.plans += 1
        if len(probes) and bool(probe_energy.min() < search.best_energy):
            self.fell_back += 1
            carried = torch.cat((search.best_actions.unsqueeze(0), search.carried, probes))
            carried_energy = torch.cat(
                (search.best_energy.unsqueeze(0), search.carried_energy, probe_energy)
            )
            search = Search.start(zero, init_std, carried, carried_energy)
            search = iterate(problem, space, cfg, self.full_sizes, search, generator)
        actions, energy = pick_final(cfg.final, search.mean, search.best_actions, problem, space)
        self._prev_plan = actions
        return ActorResult(actions=actions, energy=energy, elites=search.elites)
