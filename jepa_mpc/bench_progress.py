"""What ``jepa-mpc bench`` shows and does while it runs: a progress bar per (task, method) with an
ETA, a measured estimate when a configuration is GPU-sized for the CPU it runs on, and SIGINT /
SIGTERM turned into ``Interrupted`` so that the finished episodes are still written."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import torch

from world_model.console import progress_bar

GPU_SIZED_S = 3600.0  # a configuration projected to take longer than this on a CPU gets a hint
CPU_BUDGET = "--config sim_small, or actor.samples=64 actor.iterations=6 actor.elites=6"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while the benchmark ran.

    Attributes:
        signal_name: "SIGINT" or "SIGTERM". exit_code: 128 + the signal number (130, 143).
    """

    def __init__(self, number: int) -> None:
        super().__init__(signal.Signals(number).name)
        self.signal_name = signal.Signals(number).name
        self.exit_code = 128 + number


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise ``Interrupted`` in the main thread (elsewhere, e.g. a
    test's worker thread, the handlers cannot be set and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number: int, frame: FrameType | None) -> None:
        raise Interrupted(number)

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


class ConfigurationProgress:
    """The progress bar of one (task, method): one tick per control step, ETA from the steps so
    far. After a planner's first step it projects the configuration's time; on a CPU, a
    projection over ``GPU_SIZED_S`` prints a line that says so and names a CPU budget."""

    def __init__(self, label: str, steps: int, planner: bool, device: torch.device) -> None:
        """``steps``: control steps in all (episodes x steps per episode)."""
        self.label, self.planner, self.device = label, planner, device
        self.bar = progress_bar(steps, label, "step")
        self.started = time.perf_counter()

    def step(self) -> None:
        """One control step done."""
        self.bar.update(1)
        if self.bar.n == 1 and self.planner:
            self._project(time.perf_counter() - self.started)

    def _project(self, first_step_s: float) -> None:
        total_s = first_step_s * self.bar.total
        if self.device.type == "cpu" and total_s > GPU_SIZED_S:
            self.bar.write(
                f"[{self.label}] {first_step_s:.0f} s per step here: about "
                f"{total_s / 3600:.1f} h for {self.bar.total} steps. This configuration is "
                f"GPU-sized; a CPU budget: {CPU_BUDGET} (Ctrl-C writes the finished episodes)"
            )

    def close(self) -> None:
        """Finish the bar (it stays on screen)."""
        self.bar.close()

    def __enter__(self) -> ConfigurationProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
