"""How the planning hot path runs: the autocast dtype of a world model's rollouts and the CPU
threads torch uses, chosen per call by the planner (``planner.config.PlannerConfig``).
Measured on the project's 2-core avx512_bf16 machine: docs/benchmark.md ("CPU hot path")."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("model", "bf16", "fp32")
AUTO_THREADS = "auto"
LOADAVG = Path("/proc/loadavg")


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16), which is where bf16
    autocast pays on a CPU; elsewhere it only emulates bf16 and is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype a rollout should run in for ``precision`` on ``device``, or None to leave
    the model's own setting.

    "model": None. "fp32": float32. "bf16": bfloat16 on CUDA and on CPUs with native bf16
    (``cpu_has_bf16``), float32 on other CPUs (where bf16 would be slower).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "model":
        return None
    if precision == "bf16" and (device.type == "cuda" or cpu_has_bf16()):
        return torch.bfloat16
    return torch.float32


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def free_cores(loadavg: Path = LOADAVG) -> int:
    """Cores that no other runnable thread wants right now: the usable cores minus the
    runnable scheduling entities ``/proc/loadavg`` counts besides the reader itself, at
    least 1. Without ``/proc/loadavg`` (not Linux): every usable core.

    An instantaneous count, not the 1-minute load average: it sees a job that started a
    second ago and forgets one that just ended.
    """
    cores = usable_cores()
    try:
        runnable = int(loadavg.read_text(encoding="ascii").split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return cores
    return max(1, min(cores, cores - (runnable - 1)))


def check_threads(setting: int | str) -> str:
    """Why ``setting`` is not a ``cpu_threads`` value ('' if it is): an int >= 0 (0: leave
    torch's setting) or "auto"."""
    if setting == AUTO_THREADS:
        return ""
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 0:
        return f"cpu_threads must be >= 0 (0: torch's setting) or 'auto', got {setting!r}"
    return ""


def thread_count(setting: int | str) -> int:
    """The torch threads one plan runs with for a ``cpu_threads`` setting: the int itself
    (0: leave torch's setting), or for "auto" ``free_cores()``, decided per plan.

    Why "auto": measured on 2 cores (docs/benchmark.md, "CPU hot path"), two threads plan
    1.7x faster than one on an idle machine, and 2-50x slower when another process holds a
    core (OpenMP's second thread waits for it)."""
    return free_cores() if setting == AUTO_THREADS else int(setting)


@contextlib.contextmanager
def running(model: object, dtype: torch.dtype | None, threads: int = 0) -> Iterator[None]:
    """Run the block with ``model.autocast_dtype = dtype`` (when ``dtype`` is set and the model
    has that attribute) and ``threads`` torch CPU threads (when > 0); both restored after.

    Per call rather than once, because one model may serve several planners (a benchmark
    compares presets on the same model object) and torch's thread count is process-wide.
    """
    previous_dtype = getattr(model, "autocast_dtype", None)
    previous_threads = torch.get_num_threads()
    set_dtype = dtype is not None and hasattr(model, "autocast_dtype")
    set_threads = threads > 0 and threads != previous_threads
    if set_dtype:
        model.autocast_dtype = dtype
    if set_threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if set_dtype:
            model.autocast_dtype = previous_dtype
        if set_threads:
            torch.set_num_threads(previous_threads)
