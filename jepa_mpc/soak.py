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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

RSS_BAR_PCT = 5.0  # resident memory may grow at most this much after warm-up
LATENCY_BAR_PCT = 25.0  # the last window's median latency may exceed the first's by this much
# Which latency the drift bar judges: "wall" (what the robot sees; on a dedicated machine) or
# "cpu" (CPU time of the work; on a shared machine, where other jobs change wall time).
CLOCKS = ("wall", "cpu")


class SoakError(ValueError):
    """A soak request that cannot run (bad numbers, no way to read resident memory)."""


def resident_mb(pid: int | None = None) -> float:
    """Resident set size in MiB of process ``pid`` (default: this one): ``VmRSS`` of
    ``/proc/<pid>/status``, else psutil when installed.

    Raises:
        SoakError: neither is available on this platform, or no such process.
    """
    status_file = f"/proc/{'self' if pid is None else pid}/status"
    try:
        with open(status_file, encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        raise SoakError(f"cannot read resident memory: no {status_file} and no psutil") from None
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.Error as error:
        raise SoakError(f"cannot read resident memory of process {pid}: {error}") from error


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) spent so far by process ``pid`` (default: this
    one). Unlike wall time it does not grow when other processes compete for the cores.

    Raises:
        SoakError: the platform has no ``/proc`` and psutil is not installed.
    """
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()  # after "pid (comm)"
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil
    except ImportError:
        raise SoakError(f"cannot read the CPU time of process {pid}: no /proc, no psutil") from None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def load_average() -> float:
    """The system's 1-minute load average (NaN where the platform has none): context for
    latency figures taken on a shared machine."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def trend(x: Sequence[float], y: Sequence[float], fraction: float = 0.1) -> dict[str, float]:
    """How ``y`` moves along ``x``: medians of the first and last ``fraction`` of the samples,
    their change in %, and the least-squares slope (per unit of ``x`` and as % of the median).
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if ys.size < 2:
        nan = float("nan")
        return {"first": nan, "last": nan, "change_pct": nan, "slope": nan, "slope_pct": nan}
    width = max(1, int(round(fraction * ys.size)))
    first, last, median = np.median(ys[:width]), np.median(ys[-width:]), np.median(ys)
    slope = float(np.polyfit(xs, ys, 1)[0]) if np.ptp(xs) > 0 else 0.0
    return {
        "first": float(first),
        "last": float(last),
        "change_pct": float(100.0 * (last - first) / first) if first else float("nan"),
        "slope": slope,
        "slope_pct": float(100.0 * slope / median) if median else float("nan"),
    }


def memory_growth(rss_mb: Sequence[float], warmup: int) -> dict[str, float]:
    """Resident memory at the end of warm-up (sample ``warmup - 1``), at the end and its peak
    after warm-up, with the growth of the end and of the peak over warm-up in %."""
    rss = np.asarray(rss_mb, dtype=np.float64)
    warm = float(rss[max(warmup, 1) - 1])
    after = rss[max(warmup, 1) - 1 :]
    return {
        "warmup_mb": warm,
        "end_mb": float(rss[-1]),
        "peak_mb": float(after.max()),
        "growth_pct": 100.0 * (float(rss[-1]) - warm) / warm,
        "peak_growth_pct": 100.0 * (float(after.max()) - warm) / warm,
    }


def judge(memory: dict, latency: dict, rss_bar: float, latency_bar: float) -> dict[str, bool]:
    """The pass/fail bars: RSS growth after warm-up, and latency drift (last vs first window)."""
    return {
        "rss_growth": memory["growth_pct"] < rss_bar,
        "latency_drift": latency["change_pct"] < latency_bar,
    }


def print_summary(title: str, rows: list[tuple[str, str, str]], passed: dict[str, bool]) -> None:
    """A three-column table (figure, value, bar) and the verdict."""
    print(title)
    width = max(len(name) for name, _, _ in rows)
    for name, value, bar in rows:
        print(f"  {name:<{width}}  {value:>16}  {bar}")
    verdict = ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in passed.items())
    print(f"{'PASS' if all(passed.values()) else 'FAIL'}: {verdict}")


def memory_rows(memory: dict, rss_bar: float) -> list[tuple[str, str, str]]:
    """Table rows for ``print_summary`` from a ``memory_growth`` result."""
    return [
        ("RSS after warm-up (MiB)", f"{memory['warmup_mb']:.1f}", ""),
        ("RSS at end (MiB)", f"{memory['end_mb']:.1f}", ""),
        ("RSS growth (%)", f"{memory['growth_pct']:+.2f}", f"< {rss_bar:g}"),
        ("RSS peak growth (%)", f"{memory['peak_growth_pct']:+.2f}", ""),
    ]


def trend_rows(name: str, result: dict, unit: str, bar: float | None) -> list[tuple]:
    """Table rows for ``print_summary`` from a ``trend`` result of a latency in ms."""
    return [
        (f"{name} first/last window (ms)", f"{result['first']:.2f} / {result['last']:.2f}", ""),
        (f"{name} drift (%)", f"{result['change_pct']:+.2f}", "" if bar is None else f"< {bar:g}"),
        (f"{name} slope (%/{unit})", f"{result['slope_pct']:+.3f}", ""),
    ]


def load_row(load: dict) -> tuple[str, str, str]:
    return ("load average first/last window", f"{load['first']:.1f} / {load['last']:.1f}", "")


def write_plot(
    path: Path,
    x: Sequence[float],
    rss_mb: Sequence[float],
    latencies_ms: dict[str, Sequence[float]],
    xlabel: str,
) -> None:
    """PNG: resident memory (top) and the named latencies (bottom) against ``x``, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.bench_report import atomic_write

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    top.plot(x, rss_mb, color="tab:blue", linewidth=1)
    top.set_ylabel("RSS (MiB)")
    for label, latency_ms in latencies_ms.items():
        bottom.plot(x, latency_ms, ".", markersize=2, label=label)
    bottom.set_ylabel("latency (ms)")
    bottom.legend(markerscale=4)
    bottom.set_xlabel(xlabel)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda temp: figure.savefig(temp, dpi=100))
    plt.close(figure)


# -- the sim soak ------------------------------------------------------------------------------


def make_policy(model_spec: str, planner: str, overrides: list[str], device: str):
    """``sim.bench``'s planner policy for a model spec (``state``, a path, a bundled name)."""
    from planner import Planner, load_planner_config
    from planner.planner import resolve_device
    from sim.bench import PlannerPolicy, load_model
    from world_model.state_model import StateWorldModel

    target = resolve_device(device)
    model = load_model(model_spec, target)
    config = load_planner_config(planner, overrides)
    return PlannerPolicy(Planner(config, model, target), isinstance(model, StateWorldModel)), model


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
        series["rss_mb"].append(resident_mb())
        series["load"].append(load_average())
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
    memory = memory_growth(series["rss_mb"], warmup)
    latency = trend(kilo_steps, series["plan_ms"][after])
    plan_cpu = trend(kilo_steps, series["plan_cpu_ms"][after])
    step_latency = trend(kilo_steps, series["step_ms"][after])
    cpu = trend(kilo_steps, series["cpu_ms"][after])
    load = trend(kilo_steps, series["load"][after])
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
        "passed": judge(memory, latency if clock == "wall" else plan_cpu, rss_bar, latency_bar),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the command line; raises SoakError on bad numbers."""
    parser = argparse.ArgumentParser(prog="jepa-mpc soak", description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="planning steps in all")
    parser.add_argument("--warmup", type=int, default=100, help="steps before the RSS baseline")
    parser.add_argument("--model", default="state", help="state, sim-small or a checkpoint path")
    parser.add_argument("--planner", default="cem_paper", help="configs/planner preset or YAML")
    parser.add_argument("--task", default="reach")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--rss-bar", type=float, default=RSS_BAR_PCT, help="max RSS growth %%")
    parser.add_argument("--latency-bar", type=float, default=LATENCY_BAR_PCT, help="max drift %%")
    parser.add_argument(
        "--clock", choices=CLOCKS, default="wall", help="latency the drift bar judges (cpu: shared)"
    )
    parser.add_argument("--out", type=Path, default=Path("soak.json"), help="JSON results")
    parser.add_argument("--plot", type=Path, default=None, help="also write this PNG")
    parser.add_argument("--every", type=int, default=100, help="progress line every N steps")
    parser.add_argument("overrides", nargs="*", help="planner key=value, e.g. actor.samples=200")
    args = parser.parse_args(argv)
    if args.steps < 20 or not 1 <= args.warmup <= args.steps - 10:
        raise SoakError(
            f"need --steps >= 20 and 1 <= --warmup <= steps - 10, got {args.steps}, {args.warmup}"
        )
    if args.threads is not None and args.threads < 1:
        raise SoakError(f"--threads must be >= 1, got {args.threads}")
    if args.image_size is not None and args.image_size < 16:
        raise SoakError(f"--image-size must be >= 16 pixels, got {args.image_size}")
    return args


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak described by ``args``; returns settings, summary and per-step series."""
    import sim

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    policy, model = make_policy(args.model, args.planner, list(args.overrides), args.device)
    config = getattr(model, "config", None)
    image_size = args.image_size or getattr(config, "img_size", 64)
    env = sim.make(args.task, image_size=image_size, seed=args.seed)
    started = time.perf_counter()

    def progress(step: int, info: dict) -> None:
        if (step + 1) % args.every == 0:
            print(
                f"step {step + 1}/{args.steps}  RSS {resident_mb():.1f} MiB  "
                f"distance {info['distance']:.3f} m  {time.perf_counter() - started:.0f} s",
                flush=True,
            )

    try:
        series = run_steps(env, policy, args.steps, args.seed, progress)
    finally:
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
    from sim.bench_report import write_json

    try:
        args = parse_args(argv)
        result = soak(args)
    except (SoakError, ValueError, FileNotFoundError) as error:
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
    rows = memory_rows(summary["memory"], args.rss_bar)
    rows += trend_rows("plan wall", summary["plan_latency_ms"], "1000 steps", wall_bar)
    rows += trend_rows("plan CPU", summary["plan_cpu_ms"], "1000 steps", cpu_bar)
    rows += trend_rows("step wall", summary["step_latency_ms"], "1000 steps", None)
    rows += [load_row(summary["load_average"])]
    print_summary(title, rows, summary["passed"])
    write_json(args.out, result)
    print(f"wrote {args.out}")
    if args.plot is not None:
        series = result["series"]
        steps = range(1, args.steps + 1)
        latencies = {"plan (wall)": series["plan_ms"], "plan (CPU)": series["plan_cpu_ms"]}
        write_plot(args.plot, steps, series["rss_mb"], latencies, "planning step")
        print(f"wrote {args.plot}")
    return 0 if all(summary["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
