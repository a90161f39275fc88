"""``jepa-mpc bench``: the headless planning benchmark. Tasks x models x planners, N seeded
episodes each, with random, scripted-expert and ground-truth-state-model baselines on the same
seeds; fixed budget, success judged from the last step only. Writes JSON, Markdown and PNGs.

Example::

    jepa-mpc bench --tasks reach,grasp --planners cem_paper,icem --models state \\
        --episodes 10 --image-size 64 --out runs/bench actor.samples=64

The settings live in ``jepa_mpc.bench_config``, the episodes themselves (policies, sequential
and batched lock-step runs) in ``jepa_mpc.bench_episodes``, statistics and outputs in
``jepa_mpc.bench_report``; this module checks a request, loads its models and runs the loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sim
from jepa_mpc import bench_report as report
from jepa_mpc.bench_config import BASELINES, BenchConfig, BenchError, Method, model_label
from jepa_mpc.bench_episodes import run_configuration
from planner import load_planner_config
from planner.planner import resolve_device
from robots.config import load_config
from sim.backend import BACKENDS
from sim.goals import SUBGOAL_SCHEDULES
from sim.tasks import EVALUATION_SEEDS_START, TASK_NAMES, TRAINING_SEEDS_START
from world_model import MODEL_SPEC_HELP, resolve_model


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
    if config.seed < 0 or config.seed + config.episodes > TRAINING_SEEDS_START:
        raise BenchError(
            f"seeds {config.seed}..{config.seed + config.episodes - 1} leave the evaluation "
            f"range 0..{TRAINING_SEEDS_START - 1:,} (seeds from {TRAINING_SEEDS_START:,} up are "
            "training scenes, jepa-mpc collect)"
        )
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
        world_model = resolve_model(spec, device, verify=config.verify)
        for name, planner_config in planner_configs.items():
            label = f"{model_label(name)}@{model_label(spec)}"
            methods.append(Method(label, model_label(spec), name, planner_config, world_model))
    return methods, device


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
    parser.add_argument("--models", help=f"model specs, comma-separated: {MODEL_SPEC_HELP}")
    parser.add_argument("--baselines", help="random,expert (or 'none')")
    parser.add_argument("--episodes", type=int)
    parser.add_argument(
        "--seed", type=int, help=f"first episode's seed (default {EVALUATION_SEEDS_START})"
    )
    parser.add_argument("--backend")
    parser.add_argument("--image-size", type=int, dest="image_size")
    parser.add_argument("--steps", type=int, help="control steps (default: task length)")
    parser.add_argument(
        "--subgoals", help="tasks planned on subgoals (default push,grasp,pick_place)"
    )
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
