"""A node that prints a running planner's progress from ``/diagnostics``, one line per plan
(energy, the sim's distance to the goal, plan seconds), like ``jepa-mpc demo``, and one line
whenever the planner's mode changes (hold, stopped, error, ...). ``bringup`` starts it."""

from __future__ import annotations

import math
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

PLANNER, SIM = "goal_planner", "mujoco_franka"


class PlanMonitor(Node):
    """Prints a line per plan of ``goal_planner`` (with ``mujoco_franka``'s latest distance)."""

    def __init__(self, diagnostics_topic: str = "/diagnostics", log: Callable = print, **kwargs):
        super().__init__("plan_monitor", **kwargs)
        self._log = log
        self.plans = 0
        self.mode = ""
        self.sim: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, diagnostics_topic, self._on_diagnostics, 50)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            name = status.name.rsplit("/", 1)[-1]
            if name == SIM:
                self.sim = values
            elif name == PLANNER:
                self._on_planner(values.get("mode", ""), status.message, values)

    def _on_planner(self, mode: str, message: str, values: dict[str, str]) -> None:
        if mode == "planning":
            self.plans += 1
            self._log(self.plan_line(values))
        elif mode != self.mode:
            self._log(f"[bringup] {mode}: {message}")
        self.mode = mode

    def plan_line(self, values: dict[str, str]) -> str:
        """``plan N  energy E  distance D m  plan S s  step K`` for one planning report."""
        distance = _number(self.sim.get("distance"))
        where = f"distance {distance:.3f} m  " if math.isfinite(distance) else ""
        step = f"  step {self.sim['step']}" if "step" in self.sim else ""
        return (
            f"[bringup] plan {self.plans:4d}  energy {_number(values.get('energy')):.4f}  "
            f"{where}plan {_number(values.get('plan_ms')) / 1e3:.2f} s{step}"
        )


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan
