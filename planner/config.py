"""Typed planner settings (``configs/planner/<name>.yaml``): which actor and its knobs, where
actions are searched, and which terms the energy has."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from robots.config import ConfigError, load_config
from robots.franka import Workspace
from world_model.hot_path import PRECISIONS, check_threads

ACTORS = ("cem", "icem", "gd", "cem+gd", "mppi", "amortised", "policy")
# actor.policy value: the hierarchical mode's subgoal generator proposes (its next state).
SUBGOAL_POLICY = "subgoals"


@dataclass
class ActionBounds:
    """Where each action (a 7-D delta) is searched; a bound of 0 means "not searched" (held 0).

    Attributes:
        translation_max: per-axis limit on |Δx|, |Δy|, |Δz| (metres; release: 0.05).
        translation_l1: if set, the translation is also projected into an L1 ball of this radius
            (metres; paper: 0.075).
        rotation_max: per-axis limit on the Euler deltas (radians; 0 = rotation not searched).
        gripper_max: limit on |Δgripper| (release: 0.75; 0 = gripper not searched).
        gripper_snap: |Δgripper| below this becomes 0 in every sampled and returned action
            (our variant; 0 = no snapping).
        final_gripper_snap: |Δgripper| below this becomes 0 in the returned plan only, the
            samples are left as drawn (the release's rule: 0.25; 0 = no snapping).
    """

    translation_max: float = 0.05
    translation_l1: float | None = None
    rotation_max: float = 0.0
    gripper_max: float = 0.75
    gripper_snap: float = 0.0
    final_gripper_snap: float = 0.0


LATENT_DISTANCES = ("l1", "l2")


@dataclass
class CostConfig:
    """Weights of the energy's terms (see ``planner.cost``); the default is the paper's energy.

    Attributes:
        goal_weight: mean |ẑ_H - z_goal| of the final predicted frame (the paper's energy).
        path_weight: mean of that distance over every predicted frame 1..H.
        action_weight: mean over the horizon of the L1 norm of each action.
        workspace_weight: metres outside ``workspace``, summed over the integrated states.
        workspace: the box used by the workspace term.
        distance: how a predicted frame's latent is compared with the goal's: "l1" (mean
            absolute difference, the paper's) or "l2" (root mean square difference, which
            JEPA-WMs report plans better); the goal and path terms use it.
        readout_weights: per state dimension (x, y, z, roll, pitch, yaw, gripper), the weight
            of |final integrated state - the goal image's state read by the world model's
            readout head|; all 0 (default): no such term. Needs a model with a readout.
        critic_weight: weight per control step of the world model's critic, the learned
            cost-to-go from the end of the imagined rollout (its final predicted latent and
            integrated state) to the goal; 0 (default): no such term. Needs a model with a
            critic (``jepa-mpc train critic``).
        view_weights: for a multi-view model (``config.views``: exterior, wrist), the weight of
            each view's tokens in the goal and path distances (the distance is then the
            weighted mean of the views' distances); null (default): every token alike. One
            weight per view, else the planner refuses the model.
    """

    goal_weight: float = 1.0
    path_weight: float = 0.0
    action_weight: float = 0.0
    workspace_weight: float = 0.0
    workspace: Workspace = field(default_factory=Workspace)
    distance: str = "l1"
    readout_weights: list[float] = field(default_factory=lambda: [0.0] * 7)
    readout_gripper_threshold: float | None = None
    critic_weight: float = 0.0
    view_weights: list[float] | None = None

    def __post_init__(self) -> None:
        if self.distance not in LATENT_DISTANCES:
            raise ConfigError(
                f"cost.distance must be one of {LATENT_DISTANCES}, got {self.distance!r}"
            )
        weights = self.readout_weights
        if len(weights) != 7 or not all(_nonnegative(w) for w in weights):
            raise ConfigError(
                f"cost.readout_weights must be 7 finite weights >= 0 (x, y, z, roll, pitch, "
                f"yaw, gripper), got {weights!r}"
            )
        if not _nonnegative(self.critic_weight):
            raise ConfigError(
                f"cost.critic_weight must be a finite number >= 0, got {self.critic_weight!r}"
            )
        views = self.view_weights
        if views is not None and (
            not views or not all(_nonnegative(w) for w in views) or not sum(views) > 0
        ):
            raise ConfigError(
                f"cost.view_weights must be null or one finite weight >= 0 per camera view, not "
                f"all 0, got {views!r}"
            )
        threshold = self.readout_gripper_threshold
        if threshold is not None and not (_nonnegative(threshold) and 0 < threshold < 1):
            raise ConfigError(
                f"cost.readout_gripper_threshold must be in (0, 1) or null, got {threshold!r}"
            )

    @property
    def uses_readout(self) -> bool:
        """Whether the energy has the goal-readout term."""
        return any(w > 0 for w in self.readout_weights)

    @property
    def uses_critic(self) -> bool:
        """Whether the energy has the critic's cost-to-go term."""
        return self.critic_weight > 0


def _nonnegative(value: object) -> bool:
    """A finite number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


@dataclass
class ActorConfig:
    """Knobs of the actors; each actor reads the ones its docstring names.

    Attributes:
        name: one of ``ACTORS``.
        horizon: actions per plan (H). samples: population per iteration (S).
        iterations: sampling (or gradient) iterations. elites: top-k kept (K).
        momentum: new = momentum * old + (1 - momentum) * fitted, for mean and std.
        init_std_translation, init_std_rotation, init_std_gripper: initial sampling std.
        min_std: floor on the std of searched dimensions (0: none).
        unbiased_std: CEM/iCEM refit the elites' std with Bessel's correction (divide by K - 1,
            the release's ``torch.std``) instead of by K (our default).
        final: "mean" (the distribution's mean, release) or "best" (best sequence seen).
        warm_start: start from the previous plan shifted by one step (receding horizon).
        noise_beta: iCEM colored-noise exponent over time (0 white, 2 brown).
        population_decay: iCEM population at iteration i is samples * decay^-i (>= 2K).
        keep_elites: iCEM fraction of elites carried to the next iteration and control step.
        restarts: GD random restarts (one batch). steps: GD (or CEM+GD refinement) steps.
        learning_rate: Adam step size (metres per step, roughly).
        temperature: MPPI temperature, in units of the population's energy std.
        policy: amortised and policy: the proposal policy (a ``.safetensors`` path, a folder
            holding ``policy.safetensors``, a bundled model name such as ``sim-small``), or
            "subgoals" (the hierarchical mode's subgoal generator: a step toward the state it
            proposes, ``planner.actors.amortised.subgoal_proposal``), or "none".
        refine_samples, refine_iterations: amortised: the small iCEM search around the proposal.
        refine_std: amortised: its sampling std, as a fraction of ``init_std_*``.
        probes: amortised: sequences drawn from the full search's initial distribution; when one
            scores lower than the refined proposal, the full search runs (0: never).
    """

    name: str = "cem"
    horizon: int = 1
    samples: int = 800
    iterations: int = 10
    elites: int = 10
    momentum: float = 0.0
    init_std_translation: float = 0.05
    init_std_rotation: float = 0.1
    init_std_gripper: float = 0.5
    min_std: float = 0.0
    unbiased_std: bool = False
    final: str = "mean"
    warm_start: bool = False
    noise_beta: float = 2.0
    population_decay: float = 1.25
    keep_elites: float = 0.3
    restarts: int = 8
    steps: int = 30
    learning_rate: float = 0.005
    temperature: float = 0.5
    policy: str = "none"
    refine_samples: int = 16
    refine_iterations: int = 2
    refine_std: float = 0.25
    probes: int = 8


@dataclass
class PlannerConfig:
    """Everything ``Planner`` needs besides the world model.

    Attributes:
        actor, bounds, cost: see their classes.
        seed: seeds the planner's torch.Generator (plans are deterministic given it).
        goal_cache_size: goal latents kept (keyed by a hash of the goal's content).
        robot: robot limits config (``configs/robot/<name>.yaml``) for the safety filter.
        precision: the world model's hot path while this planner plans: "model" (as the model
            is set: bf16 on CUDA, fp32 on CPU), "bf16" (bf16 autocast on CUDA and on CPUs with
            native bf16, else fp32) or "fp32" (see ``world_model.hot_path``).
        cpu_threads: torch CPU threads while planning on the CPU (0: leave torch's setting),
            or "auto": the cores no other runnable thread wants at the start of each plan
            (``world_model.hot_path.free_cores``). Measured on 2 cores: 2 threads ran 1.7x
            faster than 1 on an idle machine and 2-50x slower while other processes used the
            cores (docs/benchmark.md, "CPU hot path").
        subgoal_ahead: the hierarchical mode (issue #15): 0 (default) plans toward the goal
            image itself; k >= 1 has the world model's subgoal generator propose, at every
            plan, the latent k control steps ahead on the data's way to the goal, and the
            search (energy, readout, critic, policy) aims at it instead. Needs a model with a
            subgoal generator (``jepa-mpc train subgoals``).
    """

    actor: ActorConfig = field(default_factory=ActorConfig)
    bounds: ActionBounds = field(default_factory=ActionBounds)
    cost: CostConfig = field(default_factory=CostConfig)
    seed: int = 0
    goal_cache_size: int = 16
    robot: str = "franka"
    precision: str = "model"
    cpu_threads: int | str = 0
    subgoal_ahead: int = 0


def validate(config: PlannerConfig) -> PlannerConfig:
    """Reject settings no actor can run with; returns ``config``."""
    actor = config.actor
    if actor.name not in ACTORS:
        raise ConfigError(f"unknown actor {actor.name!r}; known: {', '.join(ACTORS)}")
    for name in ("horizon", "samples", "iterations", "elites", "restarts", "refine_samples"):
        if getattr(actor, name) < 1:
            raise ConfigError(f"actor.{name} must be >= 1, got {getattr(actor, name)}")
    if actor.elites > actor.samples:
        raise ConfigError(f"actor.elites ({actor.elites}) exceeds actor.samples ({actor.samples})")
    if actor.unbiased_std and actor.elites < 2:
        raise ConfigError("actor.unbiased_std needs actor.elites >= 2 (the std of one elite)")
    if actor.final not in ("mean", "best"):
        raise ConfigError(f"actor.final must be 'mean' or 'best', got {actor.final!r}")
    if not 0.0 <= actor.momentum < 1.0 or not 0.0 <= actor.keep_elites <= 1.0:
        raise ConfigError("actor.momentum must be in [0, 1) and actor.keep_elites in [0, 1]")
    if actor.refine_iterations < 1 or actor.probes < 0 or actor.refine_std <= 0:
        raise ConfigError("actor.refine_iterations must be >= 1, probes >= 0, refine_std > 0")
    if actor.temperature <= 0 or actor.population_decay < 1.0:
        raise ConfigError("actor.temperature must be > 0 and actor.population_decay >= 1")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
    if config.subgoal_ahead < 0:
        raise ConfigError(f"subgoal_ahead must be >= 0 (0: off), got {config.subgoal_ahead}")
    if actor.policy == SUBGOAL_POLICY and not config.subgoal_ahead:
        raise ConfigError("actor.policy: subgoals needs the hierarchical mode (subgoal_ahead >= 1)")
    if actor.name == "policy" and actor.policy in (None, "", "none"):
        raise ConfigError("the policy actor executes a proposal: set actor.policy")
    threads_problem = check_threads(config.cpu_threads)
    if threads_problem:
        raise ConfigError(threads_problem)
    bounds = config.bounds
    if min(bounds.translation_max, bounds.rotation_max, bounds.gripper_max) < 0:
        raise ConfigError("action bounds must be >= 0")
    if min(bounds.gripper_snap, bounds.final_gripper_snap) < 0:
        raise ConfigError("bounds.gripper_snap and bounds.final_gripper_snap must be >= 0")
    if bounds.translation_l1 is not None and bounds.translation_l1 <= 0:
        raise ConfigError(f"bounds.translation_l1 must be > 0, got {bounds.translation_l1}")
    return config


FAST_PRESET = "fast"
FALLBACK_PRESET = "icem"
# actor.policy value: the proposal policy beside the world model (its checkpoint folder's
# policy.safetensors), so one preset serves every model that ships a policy.
MODEL_POLICY = "model"


def default_preset(model: str) -> str:
    """The preset to plan with when none is named: ``fast`` for a model that ships a proposal
    policy beside it (``policy.safetensors`` in its checkpoint folder: sim-small, sim-small-v2),
    else ``icem``. Only looks for the file."""
    from planner.policy import POLICY_FILE
    from world_model.checkpoint import find_checkpoint

    try:
        folder = find_checkpoint(str(model))
    except (OSError, ValueError):  # state, random:<preset>, nothing there
        return FALLBACK_PRESET
    return FAST_PRESET if (folder / POLICY_FILE).is_file() else FALLBACK_PRESET


def with_model_policy(config: PlannerConfig, world_model: object) -> PlannerConfig:
    """``config`` with ``actor.policy: model`` replaced by the folder the world model was
    loaded from (``WorldModel.source``), and ``model:NAME`` by that folder's
    ``policy_NAME.safetensors`` (a second policy shipped beside the model, e.g. the one-goal
    ``model:keypoints``); other configs unchanged.

    Raises:
        ConfigError: ``actor.policy`` is ``model`` (or ``model:NAME``) but the world model was
            not loaded from a checkpoint (built in memory, the state model).
    """
    policy = config.actor.policy or ""
    kind, _, name = policy.partition(":")
    if kind != MODEL_POLICY:
        return config
    source = getattr(world_model, "source", None)
    if source is None:
        raise ConfigError(
            f"actor.policy: {policy} means the policy beside the world model's checkpoint, and "
            f"this {type(world_model).__name__} was not loaded from one; set actor.policy to a "
            "policy file or folder (or none)"
        )
    path = Path(source)
    if name:
        from planner.policy import named_policy_file

        path = (path if path.is_dir() else path.parent) / named_policy_file(name)
    actor = dataclasses.replace(config.actor, policy=str(path))
    return dataclasses.replace(config, actor=actor)


def load_planner_config(
    name_or_path: str | Path | PlannerConfig, overrides: list[str] | None = None
) -> PlannerConfig:
    """A preset name (``cem_paper``, ``cem+gd``...), a YAML path or a config -> checked config."""
    if isinstance(name_or_path, PlannerConfig):
        if overrides:
            raise ConfigError("overrides apply to a preset name or YAML path, not a config object")
        return validate(name_or_path)
    name = str(name_or_path)
    if not name.endswith((".yaml", ".yml")):
        name = name.replace("+", "_")  # the actor "cem+gd" lives in cem_gd.yaml
    return validate(load_config(PlannerConfig, name, group="planner", overrides=overrides))
