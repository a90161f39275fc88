"""Amortised iCEM (the ``fast`` preset): a learned policy proposes the plan, a small iCEM search
refines it, and the full iCEM search runs only when random probes find something better; and
the ``policy`` actor, the proposal alone (no search)."""

from __future__ import annotations

import torch

from planner.actors.base import (
    ActionSpace,
    ActorResult,
    Problem,
    elite_moments,
    pick_final,
    refit,
)
from planner.actors.icem import Search, colored_noise, iterate, population_sizes
from planner.config import SUBGOAL_POLICY, ActorConfig
from planner.policy import ProposalPolicy, check_fits, load_policy
from planner.protocol import LatentWorldModel
from robots.config import ConfigError
from robots.franka import GRIPPER, POS, integrate_pose, pose_delta


def subgoal_proposal(
    space: ActionSpace, state: torch.Tensor, subgoal_state: torch.Tensor, ahead: int, horizon: int
) -> torch.Tensor:
    """[H, 7] the hierarchical mode's proposal (``policy: subgoals``): each step moves 1/k of
    the way from ``state`` [1, 7] to ``subgoal_state`` [1, 7], the state the subgoal generator
    proposes k = ``ahead`` steps on, and commands its gripper intent fully (closed: +max, open:
    -max, as the scripted expert does: a zero command lets an idle hand drift shut)."""
    steps, now = [], state.to(space.limit)
    target = subgoal_state.to(space.limit)
    for _ in range(horizon):
        step = pose_delta(now, target)[0]
        step[POS] = step[POS] / max(ahead, 1)
        step[GRIPPER] = space.limit[GRIPPER] * (2.0 * target[0, GRIPPER] - 1.0)
        step = space.project(step)
        steps.append(step)
        now = integrate_pose(now, step[None])
    return torch.stack(steps)


class Amortised:
    """iCEM seeded by a proposal.

    Reads what ``ICEM`` reads (for the full search: samples, iterations, elites, ...) plus
    policy, refine_samples, refine_iterations, refine_std, probes. Each plan:

    1. scores, in one batch, the candidates (the policy's proposal, or without a policy the
       previous first action held; and the previous plan), ``probes`` sequences drawn from
       the full search's initial distribution (zero mean, ``init_std_*``) and
       ``refine_samples`` around the first candidate (std ``refine_std`` x ``init_std_*``);
    2. refits on the elites of candidates and local samples and runs the other
       ``refine_iterations`` - 1 iCEM iterations of ``refine_samples`` (the probes are kept
       out: they only test the proposal);
    3. if a probe scored lower than everything the refinement found, the proposal was in the
       wrong basin: the full iCEM search runs from the probes' distribution, the refinement's
       best and the probes carried in, so its answer is never worse than the refinement's.

    Shapes depend only on the config; the fast path costs candidates + probes +
    refine_samples x refine_iterations + 1 evaluations. ``plans`` and ``fell_back`` count.
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
        self.from_subgoals = config.policy == SUBGOAL_POLICY
        if config.policy not in (None, "", "none", SUBGOAL_POLICY):
            self.policy = load_policy(config.policy, device=space.limit.device)
            if world_model is not None:
                check_fits(self.policy, world_model, config.horizon)
        self.full_sizes = population_sizes(config)
        self.plans = 0
        self.fell_back = 0
        self._prev_plan: torch.Tensor | None = None  # [H, 7]

    def reset(self) -> None:
        """Forget the previous plan (new episode)."""
        self._prev_plan = None

    def propose(self, problem: Problem) -> torch.Tensor:
        """Candidate sequences [P, H, 7] inside the bounds: the policy's proposal (or the
        subgoal generator's, or the previous first action held for H steps, or zero) and the
        previous plan, if any."""
        cfg, space = self.config, self.space
        candidates = []
        if self.from_subgoals:
            if problem.subgoal_state is None:
                raise ConfigError("actor.policy: subgoals needs the hierarchical mode")
            candidates.append(
                subgoal_proposal(
                    space, problem.state, problem.subgoal_state, problem.subgoal_ahead, cfg.horizon
                )
            )
        elif self.policy is not None:
            goal_state = problem.goal_state
            if goal_state is None and self.policy.config.goal_readout:
                goal_state = problem.world_model.read_state(problem.goal_latent)
            proposal = self.policy(problem.latent, problem.goal_latent, problem.state, goal_state)
            candidates.append(proposal[0, : cfg.horizon])
        elif self._prev_plan is not None:
            candidates.append(self._prev_plan[:1].expand(cfg.horizon, -1))
        else:
            candidates.append(torch.zeros(cfg.horizon, 7, device=space.limit.device))
        if self._prev_plan is not None:
            candidates.append(self._prev_plan)
        return space.project(torch.stack(candidates))

    def first_batch(
        self, problem: Problem, generator: torch.Generator
    ) -> tuple[Search, torch.Tensor, torch.Tensor]:
        """Score candidates, probes and the first local samples in one call.

        Returns:
            (the refinement refitted on the elites of candidates and local samples, the
            probes [Q, H, 7] and their energies [Q]).
        """
        cfg, space = self.config, self.space
        device = problem.latent.device
        init_std = space.initial_std(cfg).expand(cfg.horizon, 7)
        candidates = self.propose(problem)
        noise = colored_noise(cfg.refine_samples, cfg.horizon, cfg.noise_beta, generator, device)
        local = space.project(candidates[0] + cfg.refine_std * init_std * noise)
        probe_noise = torch.randn((cfg.probes, cfg.horizon, 7), generator=generator, device=device)
        probes = space.project(init_std * probe_noise)
        energy = problem.evaluate(torch.cat((candidates, probes, local)))
        searched = torch.cat((candidates, local))
        searched_energy = torch.cat(
            (energy[: len(candidates)], energy[len(candidates) + cfg.probes :])
        )
        order = torch.topk(searched_energy, min(cfg.elites, len(searched)), largest=False)
        elites = searched[order.indices]
        fitted_mean, fitted_std = elite_moments(elites, cfg.unbiased_std and len(elites) > 1)
        mean, std = refit(
            space, candidates[0], cfg.refine_std * init_std, fitted_mean, fitted_std, cfg
        )
        kept = max(1, round(cfg.keep_elites * cfg.elites))
        search = Search.start(mean, std, elites[:kept], order.values[:kept])
        return search, probes, energy[len(candidates) : len(candidates) + cfg.probes]

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Propose, refine, fall back when a probe wins; see class docstring."""
        cfg, space = self.config, self.space
        search, probes, probe_energy = self.first_batch(problem, generator)
        sizes = [cfg.refine_samples] * (cfg.refine_iterations - 1)
        search = iterate(problem, space, cfg, sizes, search, generator)
        self.plans += 1
        if len(probes) and bool(probe_energy.min() < search.best_energy):
            self.fell_back += 1
            init_std = space.initial_std(cfg).expand(cfg.horizon, 7)
            carried = torch.cat((search.best_actions.unsqueeze(0), probes))
            energy = torch.cat((search.best_energy.unsqueeze(0), probe_energy))
            search = Search.start(torch.zeros_like(init_std), init_std, carried, energy)
            search = iterate(problem, space, cfg, self.full_sizes, search, generator)
        if cfg.final == "best" and space.bounds.final_gripper_snap == 0:
            actions, energy = search.best_actions, search.best_energy  # scored already
        else:
            actions, energy = pick_final(
                cfg.final, search.mean, search.best_actions, problem, space
            )
        self._prev_plan = actions
        return ActorResult(actions=actions, energy=energy, elites=search.elites)


class ProposalOnly(Amortised):
    """The ``policy`` actor: the amortised actor's proposal alone (a proposal policy's, or in
    the hierarchical mode the subgoal generator's, ``policy: subgoals``), scored once for the
    plan's report and executed as it is: no search. For models whose energy is not to be
    trusted where the proposal is (one goal image far from the goal, issue #15)."""

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """The proposal, its energy, and the proposal as the only elite."""
        actions = self.space.finish(self.propose(problem)[0])
        energy = problem.evaluate(actions.unsqueeze(0))[0]
        self.plans += 1
        self._prev_plan = actions
        return ActorResult(actions=actions, energy=energy, elites=actions.unsqueeze(0))
