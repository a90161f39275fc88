"""Measure image->command latency and the achieved control rate of sim + planner over ROS 2
(loopback DDS, one process). Prints a table and writes JSON.

    python -m planner_ros.latency_bench --checkpoint state --duration 10 --out latency.json
    python -m planner_ros.latency_bench --checkpoint random:small --image-size 256 \\
        --overrides actor.samples=64 actor.iterations=2

Figures (milliseconds unless noted):
    plan_ms               Planner.plan() wall time, in the planner thread.
    image_to_command_ms   command publish time - camera image header stamp (sim render time).
    command_transport_ms  command receipt at a probe node - command header stamp.
    image_to_receipt_ms   the two above added: camera frame to command arriving at the arm.
    control_rate_hz       commands received per second; sim_step_hz: sim control steps/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped

from planner_ros import bringup
from planner_ros.conversions import stamp_seconds
from planner_ros.runtime import init_context, spin_nodes, wait_for
from planner_ros.topics import COMMAND_QOS
from world_model.files import write_json


class Probe:
    """Records command arrival times and the planner's per-cycle diagnostics."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("latency_probe", context=context)
        self.lock = threading.Lock()
        self.transport_ms: list[float] = []
        self.arrivals: list[float] = []
        self.cycles: list[dict[str, float]] = []
        self.node.create_subscription(PoseStamped, "target_pose", self._on_target, COMMAND_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_target(self, msg: PoseStamped) -> None:
        now = self.node.get_clock().now().nanoseconds * 1e-9
        stamp = stamp_seconds(msg)
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.transport_ms.append(1e3 * (now - stamp))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == "/goal_planner" and values.get("mode") == "planning":
                keys = ("plan_ms", "image_to_command_ms", "receipt_to_command_ms")
                with self.lock:
                    self.cycles.append({k: float(values[k]) for k in keys})

    def clear(self) -> None:
        with self.lock:
            self.transport_ms.clear()
            self.arrivals.clear()
            self.cycles.clear()


def summarise(samples: list[float]) -> dict[str, float]:
    """mean / p50 / p95 / max of a list of numbers (NaN if empty)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "mean": float("nan"), "p50": float("nan"), "p95": float("nan")}
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def measure(args: argparse.Namespace) -> dict:
    """Run sim + planner + probe for ``args.duration`` seconds after the first plan."""
    overrides = {
        "mujoco_franka": {"image_size": args.image_size, "rate_hz": args.sim_rate_hz, "seed": 0},
        "goal_planner": {"rate_hz": args.rate_hz, "planner_overrides": args.overrides or []},
    }
    options = bringup.BringupOptions(
        task=args.task,
        checkpoint=args.checkpoint,
        planner=args.planner,
        device=args.device,
        overrides=overrides,
    )
    context = init_context(args.domain_id)
    nodes = bringup.create_nodes(options, context)
    probe = Probe(context)
    sim = nodes[0]
    try:
        with spin_nodes(context, [*nodes, probe.node]):
            if not wait_for(lambda: len(probe.cycles) >= 2, args.warmup_s):
                raise RuntimeError(f"no plan within {args.warmup_s} s; is the planner too slow?")
            probe.clear()
            step0, started = sim.info.get("step", 0), time.monotonic()
            time.sleep(args.duration)
            elapsed = time.monotonic() - started
            steps = sim.info.get("step", 0) - step0
            with probe.lock:
                cycles, transport = list(probe.cycles), list(probe.transport_ms)
                arrivals = list(probe.arrivals)
    finally:
        for node in [*nodes, probe.node]:
            node.destroy_node()
        rclpy.shutdown(context=context)
    per_cycle = {k: [c[k] for c in cycles] for k in ("plan_ms", "image_to_command_ms")}
    n = min(len(per_cycle["image_to_command_ms"]), len(transport))
    end_to_end = [
        a + b for a, b in zip(per_cycle["image_to_command_ms"][:n], transport[:n], strict=True)
    ]
    return {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "control_rate_hz": len(arrivals) / elapsed,
        "sim_step_hz": steps / elapsed,
        "plan_ms": summarise(per_cycle["plan_ms"]),
        "image_to_command_ms": summarise(per_cycle["image_to_command_ms"]),
        "command_transport_ms": summarise(transport),
        "image_to_receipt_ms": summarise(end_to_end),
    }


def print_table(result: dict) -> None:
    s = result["settings"]
    print(
        f"checkpoint={s['checkpoint']} planner={s['planner']} overrides={s['overrides']} "
        f"image={s['image_size']}px target rate={s['rate_hz']} Hz"
    )
    print(f"{'figure':<24}{'n':>6}{'mean':>10}{'p50':>10}{'p95':>10}{'max':>10}")
    for key in ("plan_ms", "image_to_command_ms", "command_transport_ms", "image_to_receipt_ms"):
        r = result[key]
        cells = "".join(f"{r.get(c, float('nan')):>10.2f}" for c in ("mean", "p50", "p95", "max"))
        print(f"{key:<24}{r['n']:>6}{cells}")
    print(
        f"control_rate_hz {result['control_rate_hz']:.2f}   sim_step_hz {result['sim_step_hz']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m planner_ros.latency_bench", description=__doc__
    )
    parser.add_argument("--task", default="reach")
    parser.add_argument("--checkpoint", default="state")
    parser.add_argument("--planner", default="cem_paper")
    parser.add_argument("--overrides", nargs="*", default=[], help="planner key=value overrides")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--rate-hz", type=float, default=4.0, help="planner rate")
    parser.add_argument("--sim-rate-hz", type=float, default=30.0, help="camera/state rate")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=120.0)
    parser.add_argument("--domain-id", type=int, default=90 + os.getpid() % 100)
    parser.add_argument("--out", type=Path, default=Path("ros_latency.json"))
    args = parser.parse_args(argv)
    result = measure(args)
    print_table(result)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
