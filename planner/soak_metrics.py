"""Long-run health of a planning process, shared by the soak runs (``jepa-mpc soak`` in sim,
``planner_ros.soak`` over ROS): resident memory and CPU time of a process, trends of a series
(first/last window, slope), memory growth after warm-up, the pass/fail bars, the summary table
and the memory/latency plot."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from world_model.files import pyplot, save_figure

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
    """The table row for ``print_summary`` of a ``trend`` result of the load average."""
    return ("load average first/last window", f"{load['first']:.1f} / {load['last']:.1f}", "")


def write_plot(
    path: Path,
    x: Sequence[float],
    rss_mb: Sequence[float],
    latencies_ms: dict[str, Sequence[float]],
    xlabel: str,
) -> None:
    """PNG: resident memory (top) and the named latencies (bottom) against ``x``, atomically."""
    figure, (top, bottom) = pyplot().subplots(2, 1, figsize=(8, 5), sharex=True)
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
    save_figure(figure, path, dpi=100)
