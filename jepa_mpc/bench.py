"""``jepa-mpc bench``: the headless planning benchmark. It runs tasks x models x planners, N
seeded episodes each, with random and scripted-expert baselines on the same seeds (the
ground-truth-state model ``state`` is the planner-error baseline); every episode has a fixed
budget of control steps and succeeds or fails on its last step. It writes results.json,
results.md, success.png and planning_time.png into ``--out``, shows a progress bar with an ETA
per configuration, and on Ctrl-C (or SIGTERM) writes the episodes it finished.

Presets sized for the machine (``configs/bench``): ``cpu_small`` (state model, ~10 min on 2 CPU
cores), ``sim_small`` (sim-small at a CPU budget), ``paper`` (GPU-sized: 50 episodes of
cem_paper and icem on sim-small).

Examples::

    jepa-mpc bench --tasks reach --planners icem --models state --episodes 2 --out b/
    jepa-mpc bench --config cpu_small --out runs/bench_cpu_small
    jepa-mpc bench --tasks reach,grasp --planners cem_paper,icem --models state \\
        --episodes 10 --image-size 64 --out runs/bench actor.samples=64

The settings live in ``jepa_mpc.bench_config``, the episodes themselves (policies, sequential
and batched lock-step runs) in ``jepa_mpc.bench_episodes``, statistics and outputs in
``jepa_mpc.bench_report``; this module checks a request, loads its models and runs the loop.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sim
from jepa_mpc import bench_report as report
from jepa_mpc.bench_config import (
    BASELINES,
    BenchConfig,
    BenchError,
    Method,
    model_label,
    parse_task_planners,
    planner_names,
)
from jepa_mpc.bench_episodes import run_configuration
from jepa_mpc.bench_progress import ConfigurationProgress, Interrupted, interruptible
from planner import load_planner_config
from planner.protocol import model_views
from robots.config import load_config
from sim.backend import BACKENDS
from sim.goals import SUBGOAL_SCHEDULES
from sim.scene import cameras_for_views
from sim.tasks import EVALUATION_SEEDS_START, TASK_NAMES, TRAINING_SEEDS_START
from world_model import MODEL_SPEC_HELP, resolve_model
from world_model.console import CommandLineParser, device_option

STATE_ONLY_IMAGE_SIZE = 256  # camera pixels when no model looks at them (state model, baselines)


def _check_names(kind: str, names: tuple[str, ...], known: tuple[str, ...] | list[str]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BenchError(f"unknown {kind} {unknown}; known: {', '.join(known)}")


def prepare(config: BenchConfig) -> tuple[list[Method], torch.device, BenchConfig]:
    """Check every request and load the models and planner configs, before anything is written.

    Returns:
        (methods in report order: baselines, then each model x planner; the device; the config
        with its image size settled, see ``image_size_for``).

    Raises:
        BenchError, ConfigError (ValueError) or FileNotFoundError naming what is wrong.
    """
    if not config.tasks:
        raise BenchError("no tasks given (--tasks reach,grasp,...)")
    _check_names("task(s)", config.tasks, TASK_NAMES)
    _check_names("baseline(s)", config.baselines, BASELINES)
    _check_names("subgoal task(s)", config.subgoals, TASK_NAMES)
    _check_names("task_planners task(s)", tuple(config.task_planners), TASK_NAMES)
    _check_names("backend", (config.backend,), sorted(BACKENDS))
    if config.episodes < 1:
        raise BenchError(f"episodes must be >= 1, got {config.episodes}")
    if config.seed < 0 or config.seed + config.episodes > TRAINING_SEEDS_START:
        raise BenchError(
            f"seeds {config.seed}..{config.seed + config.episodes - 1} leave the evaluation "
            f"range 0..{TRAINING_SEEDS_START - 1:,} (seeds from {TRAINING_SEEDS_START:,} up are "
            "training scenes, jepa-mpc collect)"
        )
    if config.steps is not None and config.steps < 1:
        raise BenchError(f"steps must be >= 1, got {config.steps}")
    if config.image_size is not None and config.image_size < 16:
        raise BenchError(f"image_size must be >= 16 pixels, got {config.image_size}")
    if isinstance(config.batch_episodes, bool) or not isinstance(config.batch_episodes, int):
        raise BenchError(f"batch_episodes must be an integer, got {config.batch_episodes!r}")
    if config.batch_episodes < 1:
        raise BenchError(f"batch_episodes must be >= 1, got {config.batch_episodes}")
    names = planner_names(config)
    if not config.baselines and not (names and config.models):
        raise BenchError("nothing to run: give planners and models, or baselines")
    if bool(names) != bool(config.models):
        raise BenchError("planners and models go together: give at least one of each")
    device = device_option(config.device)
    methods = [Method(label=name) for name in config.baselines]
    planner_configs = {name: load_planner_config(name, list(config.overrides)) for name in names}
    for spec in config.models:
        world_model = resolve_model(spec, device, verify=config.verify)
        for name, planner_config in planner_configs.items():
            label = f"{model_label(name)}@{model_label(spec)}"
            methods.append(Method(label, model_label(spec), name, planner_config, world_model))
    config = dataclasses.replace(config, image_size=image_size_for(config, methods))
    return methods, device, config


def methods_for(task: str, methods: list[Method], config: BenchConfig) -> list[Method]:
    """The methods that run ``task``: the baselines, and on every model the configurator's
    preset for it (``task_planners``) where it names one, else every ``planners`` preset."""
    chosen = config.task_planners.get(task)
    wanted = {chosen} if chosen else set(config.planners)
    return [method for method in methods if method.planner is None or method.planner in wanted]


def cameras_for(methods: list[Method]) -> tuple[str, ...]:
    """The cameras the env renders: as many views as the widest model takes (each planner
    sees its own model's first views, ``bench_episodes.PlannerPolicy``)."""
    return cameras_for_views(max((model_views(m.world_model) for m in methods), default=1))


def image_size_for(config: BenchConfig, methods: list[Method]) -> int:
    """The camera's pixels: ``config.image_size`` when given, else the image models' input size
    (so nothing is resized), else ``STATE_ONLY_IMAGE_SIZE``.

    Raises:
        BenchError: no size given and the image models take different sizes.
    """
    if config.image_size is not None:
        return config.image_size
    sizes = {
        model_label(method.model): method.world_model.config.img_size
        for method in methods
        if getattr(method.world_model, "config", None) is not None
    }
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size} px" for name, size in sizes.items())
        raise BenchError(f"the models take different image sizes ({listed}): give --image-size")
    return next(iter(sizes.values()), STATE_ONLY_IMAGE_SIZE)


def lane_count(config: BenchConfig) -> int:
    """Lock-step lanes the planner methods run in (1: sequential)."""
    return max(1, min(config.batch_episodes, config.episodes))


def execution_mode(config: BenchConfig) -> str:
    """How the episodes ran, for ``results["execution"]``."""
    lanes = lane_count(config)
    if lanes == 1 or not planner_names(config):
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
    ``run_batched``. SIGINT or SIGTERM stops the run: the finished episodes are written and
    ``results["interrupted"]`` says by which signal (its ``exit_code``: 130 or 143).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} exists and is not a folder")
    methods, device, config = prepare(config)
    started = time.perf_counter()
    groups: list[list[dict[str, Any]]] = []  # one list of finished episodes per configuration
    print(
        f"[bench] {len(config.tasks)} task(s), {configurations(config, methods)} configuration(s)"
        f" x {config.episodes} episode(s) on {device}, {config.image_size} px camera; "
        f"{execution_mode(config)}",
        flush=True,
    )
    stop = None
    with interruptible():
        try:
            for task in config.tasks:
                run_task(task, methods, config, device, out, groups)
        except Interrupted as signal:
            stop = signal
    episodes = [episode for records in groups for episode in records]
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
        "rows": [report.summarise(records) for records in groups if records],
        "episodes": episodes,
        "interrupted": None,
    }
    if stop is not None:
        results["interrupted"] = {"signal": stop.signal_name, "exit_code": stop.exit_code}
        print(f"\n[bench] {stop.signal_name}: stopped after {len(episodes)} finished episode(s)")
        if not episodes:
            print("[bench] nothing finished, nothing written")
            return results
    report.write_outputs(out, results)
    return results


def configurations(config: BenchConfig, methods: list[Method]) -> int:
    """How many (task, method) configurations the run has."""
    return sum(len(methods_for(task, methods, config)) for task in config.tasks)


def run_task(
    task: str,
    methods: list[Method],
    config: BenchConfig,
    device: torch.device,
    out: Path,
    groups: list[list[dict[str, Any]]],
) -> None:
    """Every method's episodes on ``task``, each method's finished episodes appended (as they
    finish) to a new list in ``groups``."""
    count = configurations(config, methods)
    methods = methods_for(task, methods, config)
    lanes = lane_count(config) if any(method.planner for method in methods) else 1
    overrides = [f"episode_length={config.steps}"] if config.steps else None
    envs = []
    try:
        for _ in range(lanes):
            envs.append(
                sim.make(
                    task,
                    config.backend,
                    config.image_size,
                    task_overrides=overrides,
                    cameras=cameras_for(methods),
                )
            )
        steps = envs[0].unwrapped.episode_length
        for method in methods:
            records: list[dict[str, Any]] = []
            groups.append(records)
            index = len(groups)
            label = f"{task} {method.label} ({index}/{count})"
            planner = method.planner_config is not None
            with ConfigurationProgress(label, config.episodes * steps, planner, device) as bar:
                run_configuration(envs, task, method, config, device, out, records, bar.step)
    finally:
        for env in envs:
            env.close()


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")


def parse_args(argv: list[str]) -> tuple[BenchConfig, Path]:
    """CLI flags (over ``--config``'s YAML, over the defaults) -> (config, out folder)."""
    defaults = BenchConfig()
    parser = CommandLineParser("jepa-mpc bench", description=__doc__)
    parser.add_argument(
        "--config",
        help="A preset in configs/bench (cpu_small, sim_small, paper) or a YAML path; the flags "
        "below override its keys.",
    )
    parser.add_argument(
        "--tasks",
        help="Comma-separated tasks: reach, push, grasp, pick_place "
        f"(default: {','.join(defaults.tasks)}).",
    )
    parser.add_argument(
        "--planners",
        help="Comma-separated planner presets (configs/planner) or YAML paths "
        f"(default: {','.join(defaults.planners)}).",
    )
    parser.add_argument(
        "--models",
        help=f"Comma-separated model specs: {MODEL_SPEC_HELP} "
        f"(default: {','.join(defaults.models)}).",
    )
    parser.add_argument(
        "--baselines",
        help="Comma-separated baselines: random, expert, or none "
        f"(default: {','.join(BASELINES)}).",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        help=f"Seeded episodes per configuration (default: {defaults.episodes}).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="The first episode's seed, in the evaluation range "
        f"(default: {EVALUATION_SEEDS_START}).",
    )
    parser.add_argument(
        "--backend", help=f"Simulator: mujoco or pybullet (default: {defaults.backend})."
    )
    parser.add_argument(
        "--image-size",
        type=int,
        dest="image_size",
        help="Camera pixels (default: the image models' input size, so nothing is resized; "
        f"{STATE_ONLY_IMAGE_SIZE} when no model looks at images).",
    )
    parser.add_argument(
        "--steps", type=int, help="Control steps per episode (default: the task's length)."
    )
    parser.add_argument(
        "--subgoals",
        help="Tasks planned on their subgoal images in turn "
        f"(default: {','.join(defaults.subgoals)}).",
    )
    parser.add_argument(
        "--task-planners",
        dest="task_planners",
        help="The configurator's choice per task, TASK=PRESET,...: a task listed is planned by "
        "that preset instead of --planners (e.g. push=keypoint_policy,reach=reach_policy).",
    )
    parser.add_argument(
        "--videos", action="store_true", default=None, help="Write a video of every episode."
    )
    parser.add_argument(
        "--device",
        help="auto, cpu, cuda or cuda:N (default: auto, CUDA when there is one).",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="Skip the checkpoints' sha256 checks."
    )
    parser.add_argument(
        "--batch-episodes",
        type=int,
        dest="batch_episodes",
        help="Run a planner's episodes in lock-step lanes of N, their rollouts merged into one "
        "batch (default: 1, one after another).",
    )
    parser.add_argument("--out", required=True, help="The output folder.")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="Planner overrides applied to every planner, e.g. actor.samples=64.",
    )
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
    if args.task_planners is not None:
        given["task_planners"] = parse_task_planners(args.task_planners)
    if args.no_verify:
        given["verify"] = False
    if args.overrides:
        given["overrides"] = (*config.overrides, *args.overrides)
    return dataclasses.replace(config, **given), Path(args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc bench``: 0 when done, 2 (nothing written) on a bad request, 130
    or 143 when SIGINT or SIGTERM stopped it (the finished episodes written)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, out = parse_args(argv)
        results = run_benchmark(config, out, command=shlex.join(["jepa-mpc", "bench", *argv]))
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc bench: error: {error}", file=sys.stderr)
        return 2
    stopped = results["interrupted"]
    return stopped["exit_code"] if stopped else 0
