"""The ``Planner`` facade: checked observations and goals in, a safe action out.
``Planner.from_config(...)`` builds it; ``plan(obs, goal)`` encodes, searches, filters."""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planner.actors import ActionSpace, Problem, make_actor
from planner.actors.base import EvaluationBatch
from planner.config import PlannerConfig, load_planner_config, with_model_policy
from planner.cost import Cost
from planner.image_sizes import ImageSizes
from planner.inputs import PlanInputError, content_key, split_observation
from planner.protocol import (
    LatentWorldModel,
    ReadoutWorldModel,
    model_device,
    model_views,
    same_device,
)
from robots.config import ConfigError
from robots.franka import ACTION_DIM, GRIPPER, SafetyFilter, load_limits
from world_model.devices import resolve_device
from world_model.hot_path import autocast_dtype, running, thread_count
from world_model.resolve import resolve_model


class NonFiniteEnergyWarning(RuntimeWarning):
    """A plan's energy was NaN or inf (the world model predicted non-finite latents): the
    planner commanded hold instead of the planned action."""


@dataclass
class Plan:
    """One planning result.

    Attributes:
        action: [7] float32, the first planned action after the safety filter: what to send
            (hold, all zeros but a gripper clamp, when ``energy`` is not finite).
        actions: [H, 7] float32, the planned sequence as the actor found it (not filtered).
        energy: energy of ``actions`` under the world model.
        timings: seconds spent in "encode" (observation and goal), "plan" and "total".
        evaluations: predictor frame evaluations spent (sequences x horizon steps).
        trace: [T, 2] float64 (evaluations so far, lowest energy seen so far) per rollout call.
        threads: torch CPU threads the plan ran with (``cpu_threads``; "auto" decides per plan).
    """

    action: np.ndarray
    actions: np.ndarray
    energy: float
    timings: dict[str, float]
    evaluations: int
    trace: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    threads: int = 0


def best_so_far(problem: Problem) -> np.ndarray:
    """[T, 2] (evaluations so far, lowest energy so far) after each rollout call."""
    if not problem.trace:
        return np.zeros((0, 2))
    counts = np.array([count for count, _ in problem.trace], dtype=np.float64)
    lows = torch.stack([low for _, low in problem.trace]).double().cpu().numpy()
    return np.stack((counts, np.minimum.accumulate(lows)), axis=1)


INTENT_CHANGE = 0.1  # a proposed gripper change at least this large is an intent to move it
INTENT_CLOSED = 0.15  # a hand at least this closed is meant closed (on the cube: 0.375)


def intent(proposed: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """The subgoal generator's ``proposed`` state [B, 7] with its gripper as an intent relative
    to the ``current`` state [B, 7]: 1 (closed) for a proposed closing of ``INTENT_CHANGE`` or
    more, 0 (open) for such an opening, else what the hand is now (closed from
    ``INTENT_CLOSED``). A regression lands between open and holding the cube (0.375)."""
    state = proposed.clone()
    now = current[:, GRIPPER].to(state)
    change = state[:, GRIPPER] - now
    held = (now >= INTENT_CLOSED).to(state.dtype)
    opened = torch.where(change <= -INTENT_CHANGE, torch.zeros_like(now), held)
    state[:, GRIPPER] = torch.where(change >= INTENT_CHANGE, torch.ones_like(now), opened)
    return state


def has_readout(world_model: LatentWorldModel) -> bool:
    """Whether the model can read a state off a latent: a ``ReadoutWorldModel`` whose readout
    head, where it has an attribute for one (``WorldModel.readout``), is not None."""
    return isinstance(world_model, ReadoutWorldModel) and (
        getattr(world_model, "readout", True) is not None
    )


def has_subgoals(world_model: LatentWorldModel) -> bool:
    """Whether the model has a subgoal generator (``propose_subgoal`` and its head)."""
    return callable(getattr(world_model, "propose_subgoal", None)) and (
        getattr(world_model, "subgoals", None) is not None
    )


def has_critic(world_model: LatentWorldModel) -> bool:
    """Whether the model has a learned cost-to-go (``cost_to_go`` and a critic head)."""
    return callable(getattr(world_model, "cost_to_go", None)) and (
        getattr(world_model, "critic", None) is not None
    )


def check_subgoals(world_model: LatentWorldModel, ahead: int) -> None:
    """Raise ``ConfigError`` unless the model has a subgoal generator trained ``ahead`` steps."""
    if not has_subgoals(world_model):
        raise ConfigError(
            "subgoal_ahead needs a world model with a subgoal generator "
            f"({type(world_model).__name__} has none; train one with `jepa-mpc train "
            "subgoals`, or set subgoal_ahead to 0)"
        )
    longest = world_model.config.subgoals.max_ahead
    if ahead > longest:
        raise ConfigError(
            f"subgoal_ahead {ahead} exceeds the {longest} steps the model's subgoal generator "
            "was trained for"
        )


class Planner:
    """Receding-horizon planner on a latent world model.

    Holds the actor (and its warm start), the goal-latent cache, a seeded torch.Generator,
    the robot's safety filter and the world-model batch limit (``evaluation_batch``: after a
    CUDA out-of-memory error, sequences are scored in smaller chunks, with a warning, and the
    chunk size is kept). Given the same config, model, seed and inputs, the plans are the same.
    """

    def __init__(
        self,
        config: PlannerConfig,
        world_model: LatentWorldModel,
        device: str | torch.device = "auto",
    ) -> None:
        """Args:
        config: a checked ``PlannerConfig`` (see ``load_planner_config``).
        world_model: anything with the ``LatentWorldModel`` members; an ``nn.Module`` is moved
            to ``device``.
        device: "auto" (CUDA when available), "cpu", "cuda", ...; one that this machine does
            not have is a ``world_model.devices.DeviceError`` (a ``ValueError``).
        """
        config = with_model_policy(config, world_model)
        self.config = config
        self.device = resolve_device(device)
        if isinstance(world_model, torch.nn.Module):
            world_model = world_model.to(self.device).eval()
        elif not same_device(model_device(world_model), self.device):
            raise PlanInputError(
                f"world model computes on {model_device(world_model)}, planner asked for "
                f"{self.device}"
            )
        self.world_model = world_model
        if config.cost.uses_readout and not has_readout(world_model):
            raise ConfigError(
                "cost.readout_weights need a world model with a state readout head "
                f"({type(world_model).__name__} has none; train one with `jepa-mpc train "
                "readout`, or set the weights to 0)"
            )
        weights, views = config.cost.view_weights, model_views(world_model)
        if weights is not None and len(weights) != views:
            raise ConfigError(
                f"cost.view_weights has {len(weights)} weight(s) but the world model takes "
                f"{views} camera view(s) per image: give one per view (or null)"
            )
        if config.cost.uses_critic and not has_critic(world_model):
            raise ConfigError(
                "cost.critic_weight needs a world model with a critic "
                f"({type(world_model).__name__} has none; train one with `jepa-mpc train "
                "critic`, or set cost.critic_weight to 0)"
            )
        if config.subgoal_ahead:
            check_subgoals(world_model, config.subgoal_ahead)
        critic = world_model.cost_to_go if config.cost.uses_critic else None
        self.cost = Cost(config.cost, critic=critic)
        self.space = ActionSpace(config.bounds, self.device)
        self.actor = make_actor(config.actor, self.space, world_model)
        self.safety = SafetyFilter(load_limits(config.robot))
        model_config = getattr(world_model, "config", None)  # None: the model sees no pixels
        self.image_sizes = ImageSizes(getattr(model_config, "img_size", None), views)
        self.generator = torch.Generator(device=self.device)
        self.autocast_dtype = autocast_dtype(config.precision, self.device)
        self.cpu_threads: int | str = config.cpu_threads if self.device.type == "cpu" else 0
        self.evaluation_batch = EvaluationBatch()
        self._goal_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.reset()

    @classmethod
    def from_config(
        cls,
        cfg: str | Path | PlannerConfig,
        world_model: LatentWorldModel | str | Path,
        device: str | torch.device = "auto",
        overrides: list[str] | None = None,
        verify: bool | str = True,
    ) -> Planner:
        """The planner factory: a planner config and a world model (or its name) -> ``Planner``.

        Args:
            cfg: a preset name (``configs/planner/<name>.yaml``: cem_paper, cem_release, icem,
                icem_readout, gd, cem+gd, mppi), a YAML path or a ``PlannerConfig``.
            world_model: a ``LatentWorldModel``, or a model spec resolved by
                ``world_model.resolve_model`` ("sim-small", "state", "random:<preset>", a
                checkpoint path), loaded onto ``device``.
            device: "auto" (CUDA when available), "cpu", "cuda", ...
            overrides: ``key=value`` strings such as ``actor.samples=64``.
            verify: sha256 check of a named checkpoint (see ``world_model.load``).
        """
        config = load_planner_config(cfg, overrides)  # a bad preset fails before any loading
        if isinstance(world_model, str | Path):
            world_model = resolve_model(world_model, resolve_device(device), verify=verify)
        return cls(config, world_model, device)

    def reset(self, seed: int | None = None) -> None:
        """New episode: forget the warm start and re-seed (``config.seed`` unless given)."""
        self.actor.reset()
        self.generator.manual_seed(self.config.seed if seed is None else seed)

    def plan(self, obs: dict[str, Any], goal: dict[str, Any] | np.ndarray | torch.Tensor) -> Plan:
        """Plan the next action.

        Args:
            obs: {"image": uint8 [H, W, 3], "state": [7] end-effector state} (any mapping;
                see ``planner.inputs`` for what is accepted).
            goal: {"image": uint8 [H, W, 3], optional "state": [7]} or a goal image alone.

        Returns:
            ``Plan``; ``plan.action`` has been through the robot's safety filter relative to
            ``obs["state"]``. If the world model's predictions were not finite (energy NaN or
            inf), it is hold, with a ``NonFiniteEnergyWarning``.

        Raises:
            PlanInputError: malformed observation or goal (the message names the problem), or
                a goal image whose aspect ratio is not the camera image's; raised before
                anything is encoded, so the planner's state is unchanged. Images the model
                must resize are said once (``ImageResizeWarning``, ``planner.image_sizes``).
            torch.cuda.OutOfMemoryError: only if even one sequence at a time does not fit
                (larger batches fall back to chunks, see ``EvaluationBatch``).
        """
        threads = thread_count(self.cpu_threads)
        with running(self.world_model, self.autocast_dtype, threads):
            plan = self._plan(obs, goal)
            plan.threads = torch.get_num_threads()
            return plan

    def _plan(self, obs: dict[str, Any], goal: dict[str, Any] | np.ndarray | torch.Tensor) -> Plan:
        """``plan`` in the configured precision and threads."""
        start = time.perf_counter()
        image, state = split_observation(obs, "obs", state_required=True)
        goal_image, goal_state = split_observation(goal, "goal", state_required=False)
        self.image_sizes.check(tuple(image.shape), tuple(goal_image.shape))
        state_batch = state.to(self.device).unsqueeze(0)  # [1, 7]
        latent = self.world_model.encode(image, state_batch)  # [1, N, D]
        goal_latent = self.goal_latent(goal_image, goal_state)  # [1, N, D]
        proposed_state = None
        if self.config.subgoal_ahead:  # hierarchical mode: aim at the frame k steps ahead
            goal_latent, proposed_state = self.world_model.propose_subgoal(
                latent, state_batch, goal_latent, self.config.subgoal_ahead
            )
        self._synchronize()
        encoded = time.perf_counter()

        problem = Problem(
            self.world_model,
            self.cost,
            latent,
            state_batch,
            goal_latent,
            batch=self.evaluation_batch,
            goal_state=self.read_goal_state(goal_latent, proposed_state, state_batch),
            subgoal_state=None if proposed_state is None else intent(proposed_state, state_batch),
            subgoal_ahead=self.config.subgoal_ahead,
        )
        result = self.actor.plan(problem, self.generator)
        actions = result.actions.detach().float().cpu()  # [H, 7]; waits for the device
        planned = time.perf_counter()

        energy = float(result.energy)
        first = actions[0]
        if not math.isfinite(energy):
            first = self._hold_after_unscored_plan(energy)
        action = self.safety(state, first)
        return Plan(
            action=action.numpy().astype(np.float32),
            actions=actions.numpy().astype(np.float32),
            energy=energy,
            timings={
                "encode": encoded - start,
                "plan": planned - encoded,
                "total": time.perf_counter() - start,
            },
            evaluations=problem.evaluations,
            trace=best_so_far(problem),
        )

    def _hold_after_unscored_plan(self, energy: float) -> torch.Tensor:
        """The zero action [7] (hold), after a plan whose energy is not finite: the world model
        predicted NaN/inf, so the search had nothing to rank. The warm start is dropped so that
        one bad prediction does not seed the next plans."""
        self.actor.reset()
        warnings.warn(
            f"the planned sequence has energy {energy}: the world model's predictions are not "
            "finite; holding the pose and dropping the warm start",
            NonFiniteEnergyWarning,
            stacklevel=3,
        )
        return torch.zeros(ACTION_DIM)

    def read_goal_state(
        self,
        goal_latent: torch.Tensor,
        proposed: torch.Tensor | None = None,
        current: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The goal's state [1, 7], or None when the cost has no readout term.

        Read off the goal latent (gripper binarised at ``readout_gripper_threshold`` when set),
        or in the hierarchical mode the subgoal generator's ``proposed`` state, whose gripper is
        an intent relative to the ``current`` state [1, 7]: a proposed change of at least the
        threshold closes (1) or opens (0) the hand fully, a smaller one keeps it where it is.
        A generator's regression lands between open and holding the cube (0.375); a full
        close is what makes the hand grip (``sim.hand``), and holding needs no further command.
        """
        config = self.cost.config
        if not config.uses_readout:
            return None
        threshold = config.readout_gripper_threshold
        if proposed is not None:
            state = proposed.clone()
            if threshold is not None and current is not None:
                now = current[:, GRIPPER].to(state)
                change = state[:, GRIPPER] - now
                opened = torch.where(change <= -threshold, torch.zeros_like(now), now)
                state[:, GRIPPER] = torch.where(change >= threshold, torch.ones_like(now), opened)
            return state
        state = self.world_model.read_state(goal_latent).clone()
        if threshold is not None:
            closed = state[:, GRIPPER] >= threshold
            state[:, GRIPPER] = closed.to(state.dtype)
        return state

    def goal_latent(
        self, image: np.ndarray | torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latent [1, N, D] of a goal, from the cache when the same content was seen before."""
        key = content_key(image, state)
        if key in self._goal_cache:
            self.cache_hits += 1
            self._goal_cache.move_to_end(key)
            return self._goal_cache[key]
        self.cache_misses += 1
        states = None if state is None else state.to(self.device).unsqueeze(0)
        latent = self.world_model.encode(image, states)
        self._goal_cache[key] = latent
        while len(self._goal_cache) > max(self.config.goal_cache_size, 1):
            self._goal_cache.popitem(last=False)
        return latent

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
