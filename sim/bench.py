"""``jepa-mpc bench``: the headless planning benchmark. Tasks x models x planners, N seeded
episodes each, with random, scripted-expert and ground-truth-state-model baselines on the same
seeds; fixed budget, success judged from the last step only. Writes JSON, Markdown and PNGs.

Example::

    jepa-mpc bench --tasks reach,grasp --planners cem_paper,icem --models state \\
        --episodes 10 --image-size 64 --out runs/bench actor.samples=64
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import sim
from planner import Planner, PlannerConfig, load_planner_config
from planner.batching import RolloutBatcher
from planner.planner import resolve_device
from planner.protocol import LatentWorldModel, model_device
from robots.config import load_config
from sim import bench_report as report
from sim.backend import BACKENDS
from sim.experts import expert_action
from sim.tasks import TASK_NAMES, TASKS
from world_model.state_model import StateWorldModel

BASELINES = ("random", "expert")
# Subgoal schedules: each task's step shares of its subgoal stages (sim.tasks), scaled to the
# episode length. A task without shares for its subgoals splits the steps evenly.
SUBGOAL_SCHEDULES: dict[str, tuple[int, ...]] = {
    name: task.subgoal_shares for name, task in TASKS.items() if task.subgoal_shares
}


class BenchError(ValueError):
    """A benchmark request that cannot run (unknown task, planner, model, bad numbers)."""


@dataclass
class BenchConfig:
    """What to benchmark; ``configs/bench/<name>.yaml`` holds the same keys as the CLI flags.

    Attributes:
        tasks, planners, baselines: names (``sim.tasks.TASK_NAMES``, planner presets or YAML
            paths, ``BASELINES``).
        models: "state" (ground-truth-state model), "build:<preset>" (random init, pipeline
            checks only), a path / bundled name for ``world_model.load``, or "<path>#<preset>".
        episodes: seeded episodes per configuration (seeds ``seed .. seed+episodes-1``).
        steps: control steps per episode (None: the task's ``episode_length``).
        overrides: planner ``key=value`` overrides applied to every planner.
        subgoals: tasks that plan on their subgoal images in turn (``env.subgoals()``); the
            others plan toward the final goal image throughout.
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
    seed: int = 0
    backend: str = "mujoco"
    image_size: int = 256
    steps: int | None = None
    overrides: tuple[str, ...] = ()
    subgoals: tuple[str, ...] = ("grasp", "pick_place")
    videos: bool = False
    device: str = "auto"
    verify: bool = True
    batch_episodes: int = 1


@dataclass
class Method:
    """One way of choosing actions: a baseline, or a planner on a world model."""

    label: str
    model: str | None = None
    planner: str | None = None
    planner_config: PlannerConfig | None = None
    world_model: Any = field(default=None, repr=False)


# What a policy decides for one step: (action [7], planning seconds or None, evaluations or None).
Decision = tuple[np.ndarray, float | None, int | None]


class Policy(Protocol):
    def reset(self, seed: int) -> None: ...

    def act(self, env, obs: dict, goal: dict) -> tuple[np.ndarray, float | None, int | None]:
        """(action [7], planning seconds or None, predictor evaluations or None)."""
        ...


class RandomPolicy:
    """Uniform actions within the env's per-step limits, seeded per episode."""

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env, obs, goal):
        space = env.action_space
        return self.rng.uniform(space.low, space.high).astype(np.float32), None, None


class ExpertPolicy:
    """The scripted expert (privileged simulator state): the upper bound."""

    def reset(self, seed: int) -> None:
        pass

    def act(self, env, obs, goal):
        return expert_action(env), None, None


class PlannerPolicy:
    """MPC through ``Planner.plan``: sees the camera image and end-effector state, and the goal
    image (plus the goal state only when the model is the ground-truth-state model)."""

    def __init__(self, planner: Planner, goal_state: bool) -> None:
        self.planner = planner
        self.goal_state = goal_state

    def reset(self, seed: int) -> None:
        self.planner.reset(seed)

    def act(self, env, obs, goal):
        target = {"image": goal["image"]}
        if self.goal_state:
            target["state"] = goal["state"]
        plan = self.planner.plan({"image": obs["image"], "state": obs["state"]}, target)
        return plan.action, plan.timings["total"], plan.evaluations


def goal_schedule(task: str, goals: int, steps: int) -> list[int]:
    """Index of the (sub)goal the planner aims at, for each control step ``[steps]``.

    Stage boundaries sit at the cumulative fractions of the task's ``SUBGOAL_SCHEDULES`` entry
    when it has ``goals`` stages (pick_place, 50 steps: 9, 5, 3, 5, 12, 3 and 13 steps), else of
    equal shares; one goal is aimed at throughout. The schedule depends on the step count only,
    never on the scene (no early switching on success).
    """
    weights = SUBGOAL_SCHEDULES.get(task, ())
    if len(weights) != goals:
        weights = (1,) * goals
    bounds = np.round(np.cumsum(weights)[:-1] / sum(weights) * steps).astype(int)
    return [int(np.searchsorted(bounds, step, side="right")) for step in range(steps)]


def episode_goals(env, use_subgoals: bool) -> list[dict]:
    """The goal observations of the current episode: its subgoals (when asked for and the task
    has some; the last is the goal), else the goal alone."""
    return (env.subgoals() if use_subgoals else []) or [env.goal()]


class EpisodeRun:
    """One episode in progress, stepped from outside: ``decide`` asks the policy (thread-safe
    for a planner: it reads only the stored observation and goal), ``advance`` steps the env
    (main thread only: the renderer belongs to the thread that made the env).

    Attributes:
        obs: the latest observation. step_index: control steps taken so far.
    """

    def __init__(
        self, env, policy: Policy, seed: int, use_subgoals: bool = False, keep_frames: bool = False
    ) -> None:
        """Reset ``env`` and ``policy`` with ``seed`` (see ``run_episode`` for the rest)."""
        self.started = time.perf_counter()
        self.env, self.policy, self.seed, self.keep_frames = env, policy, seed, keep_frames
        self.obs, _ = env.reset(seed=seed)
        self.start_state = self.obs["state"].tolist()
        self.goals = episode_goals(env, use_subgoals)
        self.stages = goal_schedule(env.task.name, len(self.goals), env.episode_length)
        policy.reset(seed)
        self.frames, self.goal_frames = [self.obs["image"]], [self.goals[self.stages[0]]["image"]]
        self.plan_s: list[float] = []
        self.evaluations: list[int | None] = []
        self.info: dict[str, Any] = {}
        self.step_index = 0

    @property
    def done(self) -> bool:
        """All control steps taken."""
        return self.step_index >= len(self.stages)

    @property
    def goal(self) -> dict:
        """The (sub)goal observation aimed at in the current step."""
        return self.goals[self.stages[self.step_index]]

    def decide(self) -> Decision:
        """The policy's decision for the current step (the env is only read, not stepped)."""
        return self.policy.act(self.env, self.obs, self.goal)

    def advance(self, decision: Decision) -> None:
        """Step the env with ``decision``'s action and record the step."""
        action, seconds, evals = decision
        goal = self.goal
        self.obs, _, _, _, self.info = self.env.step(action)
        if seconds is not None:
            self.plan_s.append(seconds)
            self.evaluations.append(evals)
        if self.keep_frames:
            self.frames.append(self.obs["image"])
            self.goal_frames.append(goal["image"])
        self.step_index += 1

    def record(self) -> dict[str, Any]:
        """The finished episode's record (see ``run_episode``)."""
        record = {
            "seed": self.seed,
            "success": bool(self.info["success"]),
            "distance": float(self.info["distance"]),
            "steps": len(self.stages),
            "plan_s": self.plan_s,
            "evaluations": self.evaluations,
            "start_state": self.start_state,
            "goal_state": self.goals[-1]["state"].tolist(),
            "wall_s": time.perf_counter() - self.started,
        }
        if self.keep_frames:
            record.update(frames=self.frames, goal_frames=self.goal_frames)
        return record


def run_episode(
    env, policy: Policy, seed: int, use_subgoals: bool = False, keep_frames: bool = False
) -> dict[str, Any]:
    """One episode of exactly ``env.episode_length`` steps; success from the last step's info.

    Returns:
        seed, success, distance, steps, plan_s [steps] and evaluations [steps] (empty for
        baselines), start_state [7], goal_state [7], wall_s; with ``keep_frames`` also
        "frames" and "goal_frames" (uint8 [H, W, 3] each, reset frame first).
    """
    episode = EpisodeRun(env, policy, seed, use_subgoals, keep_frames)
    while not episode.done:
        episode.advance(episode.decide())
    return episode.record()


def decide_in_lanes(
    episodes: list[EpisodeRun], batcher: RolloutBatcher, pool: ThreadPoolExecutor
) -> dict[int, Decision]:
    """Every unfinished lane's decision, planned concurrently (lane i in a pool thread, its
    rollouts merged with the others' by ``batcher``); raises the first lane's error, if any,
    once all lanes have returned."""
    lanes = [index for index, episode in enumerate(episodes) if not episode.done]
    for index in lanes:  # all lanes active before any starts: none flushes alone
        batcher.enter(index)

    def decide(index: int) -> Decision:
        try:
            return episodes[index].decide()
        finally:
            batcher.leave(index)

    futures = {index: pool.submit(decide, index) for index in lanes}
    wait(futures.values())
    return {index: future.result() for index, future in futures.items()}


def run_lanes(
    envs: list,
    policies: list[Policy],
    seeds: list[int],
    batcher: RolloutBatcher,
    pool: ThreadPoolExecutor,
    use_subgoals: bool = False,
    keep_frames: bool = False,
) -> list[dict[str, Any]]:
    """Episodes ``seeds`` in lock-step lanes (lane i: ``envs[i]``, ``policies[i]``): per control
    step, plan every lane concurrently, then step every env here, in the calling thread.

    Returns:
        one ``run_episode`` record per seed, in order (``wall_s`` spans the lanes' shared run).
    """
    episodes = [
        EpisodeRun(env, policy, seed, use_subgoals, keep_frames)
        for env, policy, seed in zip(envs, policies, seeds, strict=False)  # last group: fewer
    ]
    while not all(episode.done for episode in episodes):
        for index, decision in decide_in_lanes(episodes, batcher, pool).items():
            episodes[index].advance(decision)
    return [episode.record() for episode in episodes]


def model_label(spec: str) -> str:
    """Short name of a model spec for tables ("state", "build:tiny", a path's stem)."""
    path = spec.partition("#")[0]
    return Path(path).stem if ("/" in path or path.endswith(".pt")) else spec


def load_model(spec: str, device: torch.device, verify: bool = True) -> LatentWorldModel:
    """Load a model spec (see ``BenchConfig.models``) onto ``device``.

    ``state`` -> StateWorldModel; ``build:<preset>`` -> ``world_model.build`` (seed 0);
    ``<path or name>`` -> ``world_model.load``; ``<path>#<preset>`` -> load with those sizes
    (an official ``.pt`` whose sizes cannot be inferred, e.g. ``vjepa2_ac_tiny.pt#tiny``).
    """
    if spec == "state":
        return StateWorldModel().to(device)
    import world_model

    if spec.startswith("build:"):
        return world_model.build(spec.removeprefix("build:"), device=device, seed=0)
    path, _, preset = spec.partition("#")
    return world_model.load(path, config=preset or None, device=device, verify=verify)


def _check_names(kind: str, names: tuple[str, ...], known: tuple[str, ...] | list[str]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError(f"unknown {kind} {unknown}; known: {', '.join(known)}")


def prepare(config: BenchConfig) -> tuple[list[Method], torch.device]:
    """Check every request and load the models and planner configs, before anything is written.

    Returns:
        (methods in report order: baselines, then each model x planner; the device).

    Raises:
        BenchError, ConfigError (ValueError) or FileNotFoundError naming what is wrong.
    """
    if not config.tasks:
        raise BenchError("no tasks given (--tasks reach,grasp,...)")
    _check_names("task(s)", config.tasks, TASK_NAMES)
    _check_names("baseline(s)", config.baselines, BASELINES)
    _check_names("subgoal task(s)", config.subgoals, TASK_NAMES)
    _check_names("backend", (config.backend,), sorted(BACKENDS))
    if config.episodes < 1:
        raise BenchError(f"episodes must be >= 1, got {config.episodes}")
    if config.steps is not None and config.steps < 1:
        raise BenchError(f"steps must be >= 1, got {config.steps}")
    if config.image_size < 16:
        raise BenchError(f"image_size must be >= 16 pixels, got {config.image_size}")
    if isinstance(config.batch_episodes, bool) or not isinstance(config.batch_episodes, int):
        raise BenchError(f"batch_episodes must be an integer, got {config.batch_episodes!r}")
    if config.batch_episodes < 1:
        raise BenchError(f"batch_episodes must be >= 1, got {config.batch_episodes}")
    if not config.baselines and not (config.planners and config.models):
        raise BenchError("nothing to run: give planners and models, or baselines")
    if bool(config.planners) != bool(config.models):
        raise BenchError("planners and models go together: give at least one of each")
    device = resolve_device(config.device)
    methods = [Method(label=name) for name in config.baselines]
    planner_configs = {
        name: load_planner_config(name, list(config.overrides)) for name in config.planners
    }
    for spec in config.models:
        world_model = load_model(spec, device, verify=config.verify)
        for name, planner_config in planner_configs.items():
            label = f"{model_label(name)}@{model_label(spec)}"
            methods.append(Method(label, model_label(spec), name, planner_config, world_model))
    return methods, device


def make_policy(
    method: Method, device: torch.device, world_model: LatentWorldModel | None = None
) -> Policy:
    """The policy that runs ``method`` (a fresh planner per configuration), on ``world_model``
    when given (a batcher's lane model) instead of ``method.world_model``."""
    if method.planner_config is None:
        return RandomPolicy() if method.label == "random" else ExpertPolicy()
    model = method.world_model if world_model is None else world_model
    planner = Planner(method.planner_config, model, device)
    return PlannerPolicy(planner, goal_state=isinstance(method.world_model, StateWorldModel))


def finish_record(
    record: dict[str, Any],
    index: int,
    task: str,
    method: Method,
    config: BenchConfig,
    out: Path,
) -> dict[str, Any]:
    """Label episode ``index``'s record, write its video (``config.videos``), print its line."""
    seed = record["seed"]
    record.update(task=task, method=method.label, model=method.model, planner=method.planner)
    if config.videos:
        name = f"{task}__{method.label.replace('/', '_')}__seed{seed}{report.video_suffix()}"
        report.write_video(out / "videos" / name, record.pop("frames"), record.pop("goal_frames"))
        record["video"] = f"videos/{name}"
    timing = f" plan {np.median(record['plan_s']):.4f} s/action" if record["plan_s"] else ""
    print(
        f"[{task} {method.label}] episode {index + 1}/{config.episodes} seed {seed}: "
        f"success={int(record['success'])} distance={record['distance']:.4f} m{timing}",
        flush=True,
    )
    return record


def run_batched(
    envs: list, task: str, method: Method, config: BenchConfig, device: torch.device, out: Path
) -> list[dict[str, Any]]:
    """A planner method's episodes in groups of ``len(envs)`` lock-step lanes sharing one
    ``RolloutBatcher`` (one planner per lane, each reset with its episode's seed)."""
    lanes = len(envs)
    world_model = method.world_model
    if isinstance(world_model, torch.nn.Module):
        world_model = world_model.to(device).eval()
    batcher = RolloutBatcher(world_model, lanes)
    # The model's own device ("cuda:0" for "cuda"): what Planner compares a lane model with.
    lane_device = model_device(world_model)
    policies = [make_policy(method, lane_device, batcher.lane(i)) for i in range(lanes)]
    use_subgoals = task in config.subgoals
    seeds = [config.seed + index for index in range(config.episodes)]
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(lanes, thread_name_prefix="bench-lane") as pool:
        for first in range(0, len(seeds), lanes):
            group = seeds[first : first + lanes]
            results = run_lanes(
                envs, policies, group, batcher, pool, use_subgoals, keep_frames=config.videos
            )
            for offset, record in enumerate(results):
                records.append(finish_record(record, first + offset, task, method, config, out))
    return records


def run_configuration(
    envs: list, task: str, method: Method, config: BenchConfig, device: torch.device, out: Path
) -> list[dict[str, Any]]:
    """All seeded episodes of one (task, method); prints one progress line per episode.

    A planner method with more than one env runs batched (``run_batched``, one lane per env);
    baselines, and everything with one env, run one episode after another on ``envs[0]``.
    """
    if method.planner_config is not None and len(envs) > 1:
        return run_batched(envs, task, method, config, device, out)
    policy = make_policy(method, device)
    use_subgoals = task in config.subgoals
    records = []
    for index in range(config.episodes):
        seed = config.seed + index
        record = run_episode(envs[0], policy, seed, use_subgoals, keep_frames=config.videos)
        records.append(finish_record(record, index, task, method, config, out))
    return records


def lane_count(config: BenchConfig) -> int:
    """Lock-step lanes the planner methods run in (1: sequential)."""
    return max(1, min(config.batch_episodes, config.episodes))


def execution_mode(config: BenchConfig) -> str:
    """How the episodes ran, for ``results["execution"]``."""
    lanes = lane_count(config)
    if lanes == 1 or not config.planners:
        return "sequential episodes, one env per task"
    return (
        f"planner episodes in {lanes} lock-step lanes, merged rollouts (one env per lane); "
        "baselines sequential"
    )


def run_benchmark(
    config: BenchConfig, out: str | Path, command: str | None = None
) -> dict[str, Any]:
    """Run every configuration, write results.json, results.md, success.png and
    planning_time.png into ``out`` (each atomically), print the table; returns the results.

    Episodes run one after another (one env per task reused: ``reset(seed)`` gives every
    method the same start and goal); with ``batch_episodes`` > 1 a planner method's episodes
    run in lock-step lanes (one env per lane, made here, in the main thread), see
    ``run_batched``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} exists and is not a folder")
    methods, device = prepare(config)
    started = time.perf_counter()
    episodes: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    overrides = [f"episode_length={config.steps}"] if config.steps else None
    lanes = lane_count(config) if config.planners else 1
    for task in config.tasks:
        envs = []
        try:
            for _ in range(lanes):
                envs.append(
                    sim.make(task, config.backend, config.image_size, task_overrides=overrides)
                )
            for method in methods:
                records = run_configuration(envs, task, method, config, device, out)
                episodes.extend(records)
                rows.append(report.summarise(records))
        finally:
            for env in envs:
                env.close()
    results = {
        "command": command,
        "config": dataclasses.asdict(config),
        "device": str(device),
        "torch": torch.__version__,
        "execution": execution_mode(config),
        "subgoal_schedules": {
            task: list(SUBGOAL_SCHEDULES.get(task, ["equal"])) for task in config.subgoals
        },
        "wall_s": time.perf_counter() - started,
        "rows": rows,
        "episodes": episodes,
    }
    report.write_outputs(out, results)
    return results


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")


def parse_args(argv: list[str]) -> tuple[BenchConfig, Path]:
    """CLI flags (over ``--config``'s YAML, over the defaults) -> (config, out folder)."""
    parser = argparse.ArgumentParser(prog="jepa-mpc bench", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="configs/bench/<name>.yaml or a YAML path")
    parser.add_argument("--tasks", help="comma-separated: reach,push,grasp,pick_place")
    parser.add_argument("--planners", help="planner presets or YAML paths, comma-separated")
    parser.add_argument("--models", help="state, build:<preset>, a checkpoint path or name")
    parser.add_argument("--baselines", help="random,expert (or 'none')")
    parser.add_argument("--episodes", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--backend")
    parser.add_argument("--image-size", type=int, dest="image_size")
    parser.add_argument("--steps", type=int, help="control steps (default: task length)")
    parser.add_argument("--subgoals", help="tasks planned on subgoals (default grasp,pick_place)")
    parser.add_argument("--videos", action="store_true", default=None)
    parser.add_argument("--device")
    parser.add_argument("--no-verify", action="store_true", help="skip checkpoint sha256 checks")
    parser.add_argument(
        "--batch-episodes",
        type=int,
        dest="batch_episodes",
        help="run a planner's episodes in lock-step lanes of N, rollouts merged (default 1)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("overrides", nargs="*", help="planner overrides: actor.samples=64 ...")
    args = parser.parse_args(argv)
    config = load_config(BenchConfig, args.config, "bench") if args.config else BenchConfig()
    given = {}
    for key in ("tasks", "planners", "models", "baselines", "subgoals"):
        if getattr(args, key) is not None:
            given[key] = _names(getattr(args, key))
    keys = ("episodes", "seed", "backend", "image_size", "steps", "videos", "device")
    for key in (*keys, "batch_episodes"):
        if getattr(args, key) is not None:
            given[key] = getattr(args, key)
    if args.no_verify:
        given["verify"] = False
    if args.overrides:
        given["overrides"] = (*config.overrides, *args.overrides)
    return dataclasses.replace(config, **given), Path(args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc bench``; returns 2 (nothing written) on a bad request."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, out = parse_args(argv)
    try:
        run_benchmark(config, out, command=shlex.join(["jepa-mpc", "bench", *argv]))
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc bench: {error}", file=sys.stderr)
        return 2
    return 0
