"""Soak the ``goal_planner`` node: a harness node plays the robot (camera images, TCP pose and
gripper at ``--rate`` Hz, a goal that alternates between two poses, a perfect arm that goes where
it is told) for ``--minutes``, with the planner in its own process. Measures over time the
planner's resident memory, image->command latency (its ``/diagnostics``), the age of the image it
acts on, and commands per second; checks the planner's camera subscription is bounded (KEEP_LAST).
Prints a table per minute and the verdict, writes JSON; exit code 1 when a bar is missed.

    python -m planner_ros.soak --minutes 10 --rate 30 --out ros_soak.json --plot ros_soak.png

Figures (ms unless noted):
    image_to_command_ms   command publish time - stamp of the image it was planned on.
    image_age_ms          that image's age when planning started (image_to_command - plan).
    plan_ms               Planner.plan() wall time.
    commands_per_s        target poses received per second; rss_mb: planner process RSS.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import PoseStamped
from rclpy.qos import HistoryPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from planner.soak_metrics import (
    CLOCKS,
    LATENCY_BAR_PCT,
    RSS_BAR_PCT,
    cpu_seconds,
    judge,
    load_average,
    load_row,
    memory_growth,
    memory_rows,
    print_summary,
    resident_mb,
    trend,
    trend_rows,
    write_plot,
)
from planner_ros.conversions import array_to_image, finger_positions, pose_to_state, state_to_pose
from planner_ros.latency_bench import Probe, summarise
from planner_ros.runtime import init_context, spin_nodes, wait_for
from planner_ros.topics import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from world_model.console import progress_bar
from world_model.files import write_json

START = np.array([0.46, 0.0, 0.37, np.pi, 0.0, 0.0, 0.0])
GOALS = (  # the goal alternates between these every --goal-every seconds
    np.array([0.56, 0.10, 0.30, np.pi, 0.0, 0.0, 0.0]),
    np.array([0.40, -0.12, 0.42, np.pi, 0.0, 0.0, 0.0]),
)
DEFAULT_OVERRIDES = ["actor.samples=200", "actor.iterations=5", "actor.elites=10"]


class SoakProbe(Probe):
    """``latency_bench.Probe`` that also notes when each planning cycle was reported."""

    def __init__(self, context) -> None:
        super().__init__(context)
        self.cycle_times: list[float] = []

    def _on_diag(self, msg) -> None:
        with self.lock:
            before = len(self.cycles)
        super()._on_diag(msg)
        with self.lock:
            self.cycle_times.extend([time.monotonic()] * (len(self.cycles) - before))


class RobotHarness:
    """Publishes what a robot with a camera would, at ``rate_hz``; its arm follows the commands."""

    def __init__(self, node, rate_hz: float, image_size: int, goal_every_s: float) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.state = START.copy()
        self.published = 0
        rng = np.random.default_rng(0)
        self.images = [
            rng.integers(0, 256, (image_size, image_size, 3), np.uint8) for _ in range(8)
        ]
        self.image_pub = node.create_publisher(Image, "camera/image", SENSOR_QOS)
        self.pose_pub = node.create_publisher(PoseStamped, "ee_pose", SENSOR_QOS)
        self.gripper_pub = node.create_publisher(JointState, "gripper/joint_states", SENSOR_QOS)
        self.goal_image_pub = node.create_publisher(Image, "goal/image", LATCHED_QOS)
        self.goal_state_pub = node.create_publisher(Float64MultiArray, "goal/state", LATCHED_QOS)
        node.create_subscription(PoseStamped, "target_pose", self._follow, COMMAND_QOS)
        self.goal_index = -1
        self._next_goal()
        node.create_timer(1.0 / rate_hz, self._publish)
        node.create_timer(goal_every_s, self._next_goal)

    def _next_goal(self) -> None:
        self.goal_index += 1
        goal = GOALS[self.goal_index % len(GOALS)]
        self.goal_image_pub.publish(array_to_image(np.full((32, 32, 3), 200, np.uint8)))
        self.goal_state_pub.publish(Float64MultiArray(data=goal.tolist()))

    def _follow(self, msg: PoseStamped) -> None:
        with self.lock:
            self.state = pose_to_state(msg, self.state[6])

    def _publish(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        with self.lock:
            state = self.state.copy()
            image = self.images[self.published % len(self.images)]
            self.published += 1
        self.image_pub.publish(array_to_image(image, "rgb8", "camera", stamp))
        pose, gripper = state_to_pose(state, "base", stamp)
        self.pose_pub.publish(pose)
        fingers = JointState(name=["fr3_finger_joint1", "fr3_finger_joint2"])
        fingers.header.stamp = stamp
        fingers.position = list(finger_positions(gripper))
        self.gripper_pub.publish(fingers)


def start_planner(args: argparse.Namespace, folder: Path, env: dict) -> subprocess.Popen:
    """The ``goal_planner`` node in its own process (parameters from a YAML file)."""
    params = {
        "checkpoint": "state",
        "config": args.planner,
        "device": "cpu",
        "planner_overrides": list(args.overrides) or [""],
        "rate_hz": float(args.planner_rate),
        "watchdog_s": 1.0,
    }
    path = folder / "goal_planner.yaml"
    path.write_text(yaml.safe_dump({"goal_planner": {"ros__parameters": params}}))
    command = [sys.executable, "-m", "planner_ros.goal_planner", "--ros-args"]
    command += ["--params-file", str(path), "--log-level", "warn"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def stop_planner(process: subprocess.Popen) -> int:
    """SIGINT (clean shutdown), then SIGKILL after 15 s; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def camera_subscription_qos(node) -> list[dict]:
    """QoS of every subscription to ``camera/image`` seen in the ROS graph. DDS discovery
    carries reliability and durability but not history/depth (reported UNKNOWN / 0)."""
    infos = node.get_subscriptions_info_by_topic("camera/image")
    return [
        {
            "node": info.node_name,
            "reliability": info.qos_profile.reliability.name,
            "history": info.qos_profile.history.name,
            "depth": int(info.qos_profile.depth),
        }
        for info in infos
    ]


def camera_queue_bounded(subscriptions: list[dict]) -> bool:
    """The planner's camera subscription is bounded: it exists, matches ``SENSOR_QOS``'s
    reliability (so it is the sensor profile the node declares) and, where discovery tells the
    history, is not KEEP_ALL; ``SENSOR_QOS`` itself is KEEP_LAST with a finite depth."""
    planner = [s for s in subscriptions if s["node"] == "goal_planner"]
    declared = SENSOR_QOS.history == HistoryPolicy.KEEP_LAST and 0 < SENSOR_QOS.depth < 100
    return (
        declared
        and bool(planner)
        and all(s["reliability"] == SENSOR_QOS.reliability.name for s in planner)
        and all(s["history"] != "KEEP_ALL" for s in planner)
    )


def record(args, process, probe, harness, node) -> dict:
    """Sample RSS every second for ``args.minutes`` after the first plan (a progress bar on
    stderr counts the seconds); return the series."""
    print(f"[ros soak] waiting for the planner's first plans (up to {args.warmup_s:.0f} s)")
    if not wait_for(lambda: len(probe.cycles) >= 2 or process.poll() is not None, args.warmup_s):
        raise RuntimeError(f"no plan within {args.warmup_s} s; is the planner too slow?")
    if process.poll() is not None:
        raise RuntimeError(f"goal_planner exited with code {process.returncode}")
    probe.clear()
    with probe.lock:
        probe.cycle_times.clear()
    published0, started = harness.published, time.monotonic()
    rss_t, rss, cpu, load = [], [], [], []
    bar = progress_bar(round(60.0 * args.minutes), "ros soak", "s")
    try:
        while (now := time.monotonic()) - started < 60.0 * args.minutes:
            if process.poll() is not None:
                raise RuntimeError(f"goal_planner died after {now - started:.0f} s")
            rss_t.append(now - started)
            rss.append(resident_mb(process.pid))
            cpu.append(cpu_seconds(process.pid))
            load.append(load_average())
            time.sleep(1.0)
            bar.update(min(round(time.monotonic() - started), bar.total) - bar.n)
    finally:
        bar.close()
    elapsed = time.monotonic() - started
    with probe.lock:
        cycles, times = list(probe.cycles), [t - started for t in probe.cycle_times]
        arrivals = [t - started for t in probe.arrivals]
    return {
        "elapsed_s": elapsed,
        "images_per_s": (harness.published - published0) / elapsed,
        "camera_subscriptions": camera_subscription_qos(node),
        "rss_t_s": rss_t,
        "rss_mb": rss,
        "cpu_s": cpu,
        "load": load,
        "cycle_t_s": times,
        "image_to_command_ms": [c["image_to_command_ms"] for c in cycles],
        "plan_ms": [c["plan_ms"] for c in cycles],
        "image_age_ms": [c["image_to_command_ms"] - c["plan_ms"] for c in cycles],
        "command_t_s": arrivals,
    }


def per_minute(series: dict) -> list[dict]:
    """One row per minute: planner RSS, commands/s and the median latencies."""
    rows = []
    minutes = max(1, int(np.ceil(series["elapsed_s"] / 60.0 - 0.05)))  # no 1-s tail bucket
    cycle_t, rss_t = np.asarray(series["cycle_t_s"]), np.asarray(series["rss_t_s"])
    commands = np.asarray(series["command_t_s"])
    for minute in range(minutes):
        lo, hi = 60.0 * minute, min(60.0 * (minute + 1), series["elapsed_s"])
        cyc = (cycle_t >= lo) & (cycle_t < hi)
        row = {"minute": minute + 1, "rss_mb": float("nan"), "load": float("nan")}
        row["cpu_pct"] = float("nan")
        in_rss = np.flatnonzero((rss_t >= lo) & (rss_t < hi))
        if in_rss.size:
            row["rss_mb"] = float(np.asarray(series["rss_mb"])[in_rss[-1]])
            row["load"] = float(np.mean(np.asarray(series["load"])[in_rss]))
        if in_rss.size > 1:
            cpu = np.asarray(series["cpu_s"])[in_rss]
            row["cpu_pct"] = float(
                100 * (cpu[-1] - cpu[0]) / (rss_t[in_rss[-1]] - rss_t[in_rss[0]])
            )
        row["commands_per_s"] = float(((commands >= lo) & (commands < hi)).sum() / (hi - lo))
        for key in ("image_to_command_ms", "image_age_ms", "plan_ms"):
            values = np.asarray(series[key])[cyc]
            row[key] = float(np.median(values)) if values.size else float("nan")
        rows.append(row)
    return rows


def cpu_per_command(series: dict, bin_s: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in minutes, planner CPU ms per command received) over ``bin_s`` bins: the
    planner's own work per cycle, which other jobs on the machine do not inflate."""
    rss_t, cpu = np.asarray(series["rss_t_s"]), np.asarray(series["cpu_s"])
    commands = np.asarray(series["command_t_s"])
    edges = np.arange(0.0, rss_t[-1] + 1e-9, bin_s)
    centres, values = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        count = int(((commands >= lo) & (commands < hi)).sum())
        if count:
            used = np.interp(hi, rss_t, cpu) - np.interp(lo, rss_t, cpu)
            centres.append((lo + hi) / 120.0)
            values.append(1e3 * used / count)
    return np.asarray(centres), np.asarray(values)


def analyse(series: dict, args: argparse.Namespace) -> dict:
    """Memory growth after ``--warmup-minutes``, latency, image-age and CPU-per-command trends
    (per minute); the drift bar judges image->command latency (``--clock wall``) or the
    planner's CPU time per command (``--clock cpu``)."""
    rss_t = np.asarray(series["rss_t_s"])
    warm = max(1, int(np.searchsorted(rss_t, 60.0 * args.warmup_minutes)))
    memory = memory_growth(series["rss_mb"], min(warm, len(rss_t)))
    minutes = np.asarray(series["cycle_t_s"]) / 60.0
    latency = trend(minutes, series["image_to_command_ms"])
    age = trend(minutes, series["image_age_ms"])
    cpu = trend(*cpu_per_command(series))
    load = trend(rss_t / 60.0, series["load"])
    passed = judge(memory, latency if args.clock == "wall" else cpu, args.rss_bar, args.latency_bar)
    # The image age cannot shrink below ~half a camera period: judge it in frames, not %.
    passed["image_age_drift"] = age["last"] <= age["first"] + 1e3 / args.rate
    passed["bounded_camera_queue"] = camera_queue_bounded(series["camera_subscriptions"])
    return {
        "memory": memory,
        "image_to_command_ms": {**summarise(series["image_to_command_ms"]), "trend": latency},
        "image_age_ms": {**summarise(series["image_age_ms"]), "trend": age},
        "cpu_ms_per_command": cpu,
        "drift_clock": args.clock,
        "plan_ms": summarise(series["plan_ms"]),
        "commands_per_s": len(series["command_t_s"]) / series["elapsed_s"],
        "images_per_s": series["images_per_s"],
        "sensor_qos": {"history": SENSOR_QOS.history.name, "depth": SENSOR_QOS.depth},
        "camera_subscriptions": series["camera_subscriptions"],
        "load_average": load,
        "per_minute": per_minute(series),
        "passed": passed,
    }


def print_report(result: dict, args: argparse.Namespace) -> None:
    summary = result["summary"]
    print("per minute (medians, ms):")
    print(
        f"{'min':>4}{'RSS MiB':>10}{'cmd/s':>8}{'img->cmd':>10}{'img age':>10}{'plan':>9}"
        f"{'CPU %':>7}{'load':>7}"
    )
    for row in summary["per_minute"]:
        print(
            f"{row['minute']:>4}{row['rss_mb']:>10.1f}{row['commands_per_s']:>8.2f}"
            f"{row['image_to_command_ms']:>10.1f}{row['image_age_ms']:>10.1f}{row['plan_ms']:>9.1f}"
            f"{row['cpu_pct']:>7.1f}{row['load']:>7.1f}"
        )
    wall_bar, cpu_bar = (
        (args.latency_bar, None) if args.clock == "wall" else (None, args.latency_bar)
    )
    age_bar = f"<= first + {1e3 / args.rate:.0f}"
    rows = memory_rows(summary["memory"], args.rss_bar)
    rows += trend_rows("image->command", summary["image_to_command_ms"]["trend"], "min", wall_bar)
    rows += trend_rows("image age", summary["image_age_ms"]["trend"], "min", None)[:1]
    rows[-1] = (*rows[-1][:2], age_bar)
    rows += trend_rows("planner CPU per command", summary["cpu_ms_per_command"], "min", cpu_bar)
    rows += [
        load_row(summary["load_average"]),
        ("commands per second", f"{summary['commands_per_s']:.2f}", f"{args.planner_rate:g} Hz"),
        ("images per second", f"{summary['images_per_s']:.2f}", f"{args.rate:g} Hz"),
        ("camera subscription QoS", _qos_text(summary), ""),
    ]
    title = (
        f"ROS soak: {args.minutes:g} min, camera {args.rate:g} Hz {args.image_size} px, planner "
        f"{args.planner} {' '.join(args.overrides)} at {args.planner_rate:g} Hz (state model); "
        f"latency = image->command; drift judged on {args.clock} time"
    )
    print_summary(title, rows, summary["passed"])


def _qos_text(summary: dict) -> str:
    declared = summary["sensor_qos"]
    seen = [
        s["reliability"] for s in summary["camera_subscriptions"] if s["node"] == "goal_planner"
    ]
    return f"{declared['history']} depth {declared['depth']} (declared); seen {seen}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m planner_ros.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0, help="camera/pose rate (Hz)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--planner", default="cem_paper")
    parser.add_argument("--planner-rate", type=float, default=4.0, help="goal_planner rate_hz")
    parser.add_argument("--threads", type=int, default=None, help="planner OMP/torch threads")
    parser.add_argument("--goal-every", type=float, default=20.0, help="seconds per goal")
    parser.add_argument("--warmup-minutes", type=float, default=1.0, help="before RSS baseline")
    parser.add_argument("--warmup-s", type=float, default=180.0, help="wait for the first plan")
    parser.add_argument("--rss-bar", type=float, default=RSS_BAR_PCT)
    parser.add_argument("--latency-bar", type=float, default=LATENCY_BAR_PCT)
    parser.add_argument(
        "--clock", choices=CLOCKS, default="wall", help="drift bar on latency or CPU/command"
    )
    parser.add_argument("--domain-id", type=int, default=224 + os.getpid() % 8)
    parser.add_argument("--out", type=Path, default=Path("ros_soak.json"))
    parser.add_argument("--plot", type=Path, default=None, help="also write this PNG")
    parser.add_argument("overrides", nargs="*", default=DEFAULT_OVERRIDES, help="planner k=v")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.planner_rate <= 0 or args.image_size < 8:
        parser.error("--minutes, --rate and --planner-rate must be > 0, --image-size >= 8")
    if not 0 <= args.warmup_minutes < args.minutes:
        parser.error("--warmup-minutes must be in [0, --minutes)")
    return args


def soak(args: argparse.Namespace) -> dict:
    """Start the planner process and the harness, record, stop both; returns the results."""
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(args.domain_id),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    context = init_context(args.domain_id)
    node = rclpy.create_node("soak_harness", context=context)
    harness = RobotHarness(node, args.rate, args.image_size, args.goal_every)
    probe = SoakProbe(context)
    with tempfile.TemporaryDirectory(prefix="ros_soak.") as folder:
        process = start_planner(args, Path(folder), env)
        try:
            with spin_nodes(context, [node, probe.node]):
                series = record(args, process, probe, harness, node)
        finally:
            code = stop_planner(process)
            node.destroy_node()
            probe.node.destroy_node()
            rclpy.shutdown(context=context)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {
        "settings": settings,
        "cpu_count": os.cpu_count(),
        "planner_exit_code": code,
        "summary": analyse(series, args),
        "series": series,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = soak(args)
    print_report(result, args)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    if args.plot is not None:
        series = result["series"]
        rss_at_cycle = np.interp(series["cycle_t_s"], series["rss_t_s"], series["rss_mb"])
        minutes = np.asarray(series["cycle_t_s"]) / 60.0
        latencies = {"image->command": series["image_to_command_ms"]}
        write_plot(args.plot, minutes, rss_at_cycle, latencies, "minutes")
        print(f"wrote {args.plot}")
    return 0 if all(result["summary"]["passed"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
