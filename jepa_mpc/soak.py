"""``jepa-mpc soak``: a long run of receding-horizon planning in the MuJoCo sim (new episode
whenever one ends) that samples this process's resident memory and the planning latency at every
step and judges them: RSS growth after warm-up, and latency drift between the first and last
windows. Prints a table, writes JSON (and optionally a PNG); exit code 1 when a bar is missed.

    jepa-mpc soak --steps 2000 --model state --planner cem_paper --out soak.json \\
        --plot soak.png actor.samples=200 actor.iterations=5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa_mpc.bench_episodes import PlannerPolicy
from planner import Planner
from planner import soak_metrics as metrics
from planner.protocol import model_views
from world_model.console import CommandLineParser, device_option, progress_bar
from world_model.files import write_json
from world_model.state_model import StateWorldModel


def make_policy(model_spec: str, planner: str, overrides: list[str], device: str | torch.device):
    """The benchmark's planner policy for a planner preset and a model spec (``state``, a path,
    a bundled name, ...: ``world_model.resolve_model``); returns (policy, world model)."""
    planner = Planner.from_config(planner, model_spec, device, overrides)
    model = planner.world_model
    return PlannerPolicy(planner, isinstance(model, StateWorldModel), model_views(model)), model


def run_steps(
    env, policy, steps: int, seed: int, progress: Callable[[int, dict], None] | None = None
) -> dict[str, list]:
    """Plan and execute ``steps`` control steps, starting a new seeded episode whenever one is
    truncated. Returns per-step ``rss_mb``, ``plan_ms`` (``Planner.plan`` wall time),
    ``plan_cpu_ms`` (its CPU time), ``step_ms`` (plan + env step, wall), ``cpu_ms`` (CPU time
    of the whole step), the system
    ``load`` average and the ``episode`` index of each step; ``episode_success`` per finished
    episode."""
    series: dict[str, list] = {"rss_mb": [], "plan_ms": [], "plan_cpu_ms": [], "step_ms": []}
    series.update(cpu_ms=[], load=[], episode=[], episode_success=[])
    episode = 0
    obs, _ = env.reset(seed=seed)
    goal = env.unwrapped.goal()
    policy.reset(seed)
    for step in range(steps):
        began, cpu = time.perf_counter(), time.process_time()
        action, plan_s, _ = policy.act(env, obs, goal)
        series["plan_cpu_ms"].append(1e3 * (time.process_time() - cpu))
        obs, _, terminated, truncated, info = env.step(action)
        series["step_ms"].append(1e3 * (time.perf_counter() - began))
        series["cpu_ms"].append(1e3 * (time.process_time() - cpu))
        series["plan_ms"].append(1e3 * plan_s)
        series["rss_mb"].append(metrics.resident_mb())
        series["load"].append(metrics.load_average())
        series["episode"].append(episode)
        if progress is not None:
            progress(step, info)
        if terminated or truncated:
            series["episode_success"].append(bool(info["success"]))
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
            goal = env.unwrapped.goal()
            policy.reset(seed + episode)
    return series


def analyse(
    series: dict[str, list], warmup: int, rss_bar: float, latency_bar: float, clock: str = "wall"
) -> dict:
    """Memory growth and latency trends (after warm-up, per 1000 steps) and the verdict; the
    drift bar judges the planning latency on ``clock`` ("wall" or "cpu")."""
    steps = np.arange(len(series["plan_ms"]))
    after = slice(warmup, None)
    kilo_steps = steps[after] / 1000.0
    memory = metrics.memory_growth(series["rss_mb"], warmup)
    latency = metrics.trend(kilo_steps, series["plan_ms"][after])
    plan_cpu = metrics.trend(kilo_steps, series["plan_cpu_ms"][after])
    step_latency = metrics.trend(kilo_steps, series["step_ms"][after])
    cpu = metrics.trend(kilo_steps, series["cpu_ms"][after])
    load = metrics.trend(kilo_steps, series["load"][after])
    return {
        "memory": memory,
        "plan_latency_ms": latency,
        "plan_cpu_ms": plan_cpu,
        "drift_clock": clock,
        "step_latency_ms": step_latency,
        "cpu_ms_per_step": cpu,
        "load_average": load,
        "episodes": int(series["episode"][-1]) + 1,
        "success_rate": float(np.mean(series["episode_success"] or [np.nan])),
        "passed": metrics.judge(
            memory, latency if clock == "wall" else plan_cpu, rss_bar, latency_bar
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the command line; raises SoakError on bad numbers."""
    parser = CommandLineParser("jepa-mpc soak", description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="planning steps in all")
    parser.add_argument("--warmup", type=int, default=100, help="steps before the RSS baseline")
    parser.add_argument("--model", default="state", help="state, sim-small or a checkpoint path")
    parser.add_argument("--planner", default="cem_paper", help="configs/planner preset or YAML")
    parser.add_argument("--task", default="reach", help="sim task")
    parser.add_argument(
        "--image-size", type=int, default=None, help="camera pixels (default: the model's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first episode's seed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--rss-bar", type=float, default=metrics.RSS_BAR_PCT, help="max RSS growth %%"
    )
    parser.add_argument(
        "--latency-bar", type=float, default=metrics.LATENCY_BAR_PCT, help="max drift %%"
    )
    parser.add_argument(
        "--clock",
        choices=metrics.CLOCKS,
        default="wall",
        help="latency the drift bar judges (cpu: shared)",
    )
    parser.add_argument("--out", type=Path, default=Path("soak.json"), help="JSON results")
    parser.add_argument("--plot", type=Path, default=None, help="also write this PNG")
    parser.add_argument(
        "--every", type=int, default=100, help="a line (RSS, distance) every N steps"
    )
    parser.add_argument("overrides", nargs="*", help="planner key=value, e.g. actor.samples=200")
    args = parser.parse_args(argv)
    if args.steps < 20 or not 1 <= args.warmup <= args.steps - 10:
        raise metrics.SoakError(
            f"need --steps >= 20 and 1 <= --warmup <= steps - 10, got {args.steps}, {args.warmup}"
        )
    if args.threads is not None and args.threads < 1:
        raise metrics.SoakError(f"--threads must be >= 1, got {args.threads}")
    if args.image_size is not None and args.image_size < 16:
        raise metrics.SoakError(f"--image-size must be >= 16 pixels, got {args.image_size}")
    return args


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak described by ``args``; returns settings, summary and per-step series."""
    import sim
    from sim.scene import cameras_for_views

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = device_option(args.device)
    policy, model = make_policy(args.model, args.planner, list(args.overrides), device)
    config = getattr(model, "config", None)
    image_size = args.image_size or getattr(config, "img_size", 64)
    cameras = cameras_for_views(model_views(model))
    env = sim.make(args.task, image_size=image_size, seed=args.seed, cameras=cameras)
    started = time.perf_counter()
    bar = progress_bar(args.steps, "soak", "step")

    def progress(step: int, info: dict) -> None:
        bar.update(1)
        if (step + 1) % args.every == 0:
            bar.write(
                f"step {step + 1}/{args.steps}  RSS {metrics.resident_mb():.1f} MiB  "
                f"distance {info['distance']:.3f} m  {time.perf_counter() - started:.0f} s",
                file=sys.stdout,
            )

    try:
        series = run_steps(env, policy, args.steps, args.seed, progress)
    finally:
        bar.close()
        env.close()
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.update(image_size=image_size, torch_threads=torch.get_num_threads())
    return {
        "settings": settings,
        "cpu_count": os.cpu_count(),
        "wall_s": time.perf_counter() - started,
        "summary": analyse(series, args.warmup, args.rss_bar, args.latency_bar, args.clock),
        "series": series,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc soak``: 0 when both bars are met, 1 when not, 2 on bad input."""
    try:
        args = parse_args(argv)
        result = soak(args)
    except (metrics.SoakError, ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc soak: error: {error}", file=sys.stderr)
        return 2
    summary, s = result["summary"], result["settings"]
    title = (
        f"soak: {args.steps} steps ({summary['episodes']} episodes, success rate "
        f"{summary['success_rate']:.2f}) of {s['planner']} "
        f"{' '.join(s['overrides'])} on {s['model']}, {s['image_size']} px, "
        f"{result['wall_s']:.0f} s; warm-up {args.warmup} steps; latency = Planner.plan; "
        f"drift judged on {args.clock} time"
    )
    wall_bar, cpu_bar = (
        (args.latency_bar, None) if args.clock == "wall" else (None, args.latency_bar)
    )
    rows = metrics.memory_rows(summary["memory"], args.rss_bar)
    rows += metrics.trend_rows("plan wall", summary["plan_latency_ms"], "1000 steps", wall_bar)
    rows += metrics.trend_rows("plan CPU", summary["plan_cpu_ms"], "1000 steps", cpu_bar)
    rows += metrics.trend_rows("step wall", summary["step_latency_ms"], "1000 steps", None)
    rows += [metrics.load_row(summary["load_average"])]
    metrics.print_summary(title, rows, summary["passed"])
    write_json(args.out, result)
    print(f"wrote {args.out}")
    if args.plot is not None:
        series = result["series"]
        steps = range(1, args.steps + 1)
        latencies = {"plan (wall)": series["plan_ms"], "plan (CPU)": series["plan_cpu_ms"]}
        metrics.write_plot(args.plot, steps, series["rss_mb"], latencies, "planning step")
        print(f"wrote {args.plot}")
    return 0 if all(summary["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
