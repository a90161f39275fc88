"""What ``jepa-mpc bench`` runs: its settings (``BenchConfig``, the same keys as
``configs/bench/*.yaml`` and the CLI flags), the methods it compares (``Method``) and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner import PlannerConfig
from sim.tasks import EVALUATION_SEEDS_START

BASELINES = ("random", "expert")


class BenchError(ValueError):
    """A benchmark request that cannot run (unknown task, planner, model, bad numbers)."""


@dataclass
class BenchConfig:
    """What to benchmark; ``configs/bench/<name>.yaml`` holds the same keys as the CLI flags.

    Attributes:
        tasks, planners, baselines: names (``sim.tasks.TASK_NAMES``, planner presets or YAML
            paths, ``BASELINES``).
        models: model specs for ``world_model.resolve_model``: "state" (ground-truth-state
            model), "random:<preset>" (untrained, pipeline checks only), a path or bundled
            name, or "<path>#<preset>".
        episodes: seeded episodes per configuration (seeds ``seed .. seed+episodes-1``).
        steps: control steps per episode (None: the task's ``episode_length``).
        overrides: planner ``key=value`` overrides applied to every planner.
        subgoals: tasks that plan on their subgoal images in turn (``env.subgoals()``); the
            others plan toward the final goal image throughout.
        task_planners: the configurator's choice per task, ``{task: preset}``: a task listed
            here is planned by that one preset (on every model) instead of by ``planners``,
            e.g. ``{push: keypoint_policy, reach: reach_policy}`` (``configs/bench/one_goal``).
        videos: write one video per episode (goal image beside the frames).
        device: "auto", "cpu", "cuda", ...
        verify: check checkpoints' sha256 against their card before loading (--no-verify).
        batch_episodes: planner episodes of one configuration run in lock-step lanes of this
            many, their world-model rollouts merged into one call (1: one after another).
    """

    tasks: tuple[str, ...] = ("reach",)
    planners: tuple[str, ...] = ("cem_paper",)
    models: tuple[str, ...] = ("state",)
    baselines: tuple[str, ...] = BASELINES
    episodes: int = 10
    seed: int = EVALUATION_SEEDS_START
    backend: str = "mujoco"
    image_size: int | None = None  # None: the image models' input size (bench.image_size_for)
    steps: int | None = None
    overrides: tuple[str, ...] = ()
    subgoals: tuple[str, ...] = ("push", "grasp", "pick_place")
    task_planners: dict[str, str] = field(default_factory=dict)
    videos: bool = False
    device: str = "auto"
    verify: bool = True
    batch_episodes: int = 1


def planner_names(config: BenchConfig) -> tuple[str, ...]:
    """Every planner preset the run loads: ``planners``, then the configurator's choices."""
    return tuple(dict.fromkeys([*config.planners, *config.task_planners.values()]))


def parse_task_planners(text: str) -> dict[str, str]:
    """``"push=keypoint_policy,reach=reach_policy"`` -> ``{task: preset}`` ("" or "none": {}).

    Raises:
        BenchError: an entry is not ``TASK=PRESET`` or names a task twice.
    """
    chosen: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry or entry == "none":
            continue
        task, sign, preset = (piece.strip() for piece in entry.partition("="))
        if not sign or not task or not preset:
            raise BenchError(f"--task-planners entry {entry!r} is not TASK=PRESET")
        if task in chosen:
            raise BenchError(f"--task-planners names {task} twice")
        chosen[task] = preset
    return chosen


@dataclass
class Method:
    """One way of choosing actions: a baseline, or a planner on a world model."""

    label: str
    model: str | None = None
    planner: str | None = None
    planner_config: PlannerConfig | None = None
    world_model: Any = field(default=None, repr=False)


def model_label(spec: str) -> str:
    """Short name of a model spec for tables ("state", "random:tiny", a path's stem)."""
    path = spec.partition("#")[0]
    return Path(path).stem if ("/" in path or path.endswith(".pt")) else spec
