"""Reach through the ROS nodes, as ``ros2 launch planner franka_goal.launch.py`` runs them: the
sim and the planner in two processes with the config files' parameters (sim-small + fast by
default), one episode per seed, and the same seeds planned in-process (``sim.make`` +
``Planner.plan``, as ``jepa-mpc demo`` does) for comparison. Prints a table, writes JSON.

    python -m planner_ros.reach_bench --seeds 0-9 --threads 1 --out reach_nodes.json
    python -m planner_ros.reach_bench --seeds 0-2 --in-process-only

Per episode: the distance to the goal after each executed command, the final distance (after
``--steps`` commands, the task's 20 by default) and success (< the task's threshold), plan times,
and how many plans started from an observation that did not yet show every command sent before
(``stale``: the sim steps on a command at its next tick; a frame published in between carries a
later stamp but the earlier scene) or from an image and a pose of different sim steps (``mixed``).
"""

from __future__ import annotations

import argparse
import json
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
from diagnostic_msgs.msg import DiagnosticArray

from planner_ros.models import preset_for
from planner_ros.runtime import config_file, init_context, load_params, spin_nodes, wait_for

THRESHOLD_M = 0.03  # configs/task/reach.yaml success_threshold


class Recorder:
    """The sim's ticks (stamp -> step, distance) and the planner's reports, from /diagnostics."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("reach_recorder", context=context)
        self.lock = threading.Lock()
        self.ticks: dict[float, tuple[int, float]] = {}  # stamp -> (step, distance)
        self.reports: list[dict] = []  # the planner's, in order
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 200)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with self.lock:
                if status.name.endswith("mujoco_franka"):
                    self.ticks[round(stamp, 6)] = (int(values["step"]), float(values["distance"]))
                elif status.name.endswith("goal_planner"):
                    self.reports.append({"message": status.message, **values})

    def clear(self) -> None:
        with self.lock:
            self.ticks.clear()
            self.reports.clear()

    def step(self) -> int:
        with self.lock:
            return max((step for step, _ in self.ticks.values()), default=0)


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` or ``"1,4,7"`` -> seeds."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(seed) for seed in text.split(",")]


def params_file(folder: Path, node: str, values: dict) -> Path:
    """The node's config file values, updated with ``values``, as a ROS parameter file."""
    params = {**load_params(config_file(node), node), **values}
    path = folder / f"{node}.yaml"
    path.write_text(yaml.safe_dump({node: {"ros__parameters": params}}))
    return path


def start(node: str, params: Path, env: dict, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", f"planner_ros.{node}", "--ros-args", "--params-file"]
    return subprocess.Popen(
        [*command, str(params)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def episode_through_nodes(
    seed: int, args: argparse.Namespace, env: dict, recorder: Recorder
) -> dict:
    """One reach episode with both nodes as processes; stopped after ``args.steps`` commands."""
    recorder.clear()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sim = params_file(folder, "mujoco_franka", {"seed": seed, "image_size": args.image_size})
        planner_values = {"cpu_threads": args.threads, "device": "cpu"}
        if args.overrides:
            planner_values["planner_overrides"] = list(args.overrides)
        planner = params_file(folder, "goal_planner", planner_values)
        began = time.monotonic()
        processes = [
            start("mujoco_franka", sim, env, folder / "sim.log"),
            start("goal_planner", planner, env, folder / "planner.log"),
        ]
        try:
            done = wait_for(lambda: recorder.step() >= args.steps, args.timeout, poll_s=0.2)
        finally:
            for process in processes:
                process.send_signal(signal.SIGINT)
            codes = [process.wait(timeout=30) for process in processes]
        wall_s = time.monotonic() - began
    with recorder.lock:
        ticks, reports = dict(recorder.ticks), list(recorder.reports)
    return {"seed": seed, "finished": done, "exit_codes": codes, "wall_s": wall_s} | summary(
        ticks, reports, args.steps
    )


def summary(ticks: dict[float, tuple[int, float]], reports: list[dict], steps: int) -> dict:
    """Distances per step, the final one, plan times and stale/mixed input counts."""
    by_step: dict[int, float] = {}
    for _, (step, distance) in sorted(ticks.items()):
        by_step.setdefault(step, distance)  # the first tick after each step
    distances = [by_step[s] for s in sorted(by_step) if s <= steps]
    plans = [r for r in reports if r.get("mode") == "planning"]
    commands = 0
    stale = mixed = 0
    for report in reports:
        if report.get("mode") == "planning":
            image, pose, _ = json.loads(report["input_stamps"])
            image_step = ticks.get(round(image, 6), (None, None))[0]
            pose_step = ticks.get(round(pose, 6), (None, None))[0]
            stale += image_step is not None and image_step < commands
            mixed += None not in (image_step, pose_step) and image_step != pose_step
        if report.get("target", "none") != "none":
            commands += 1
    plan_s = [float(r["plan_ms"]) / 1e3 for r in plans]
    final = by_step.get(steps, distances[-1] if distances else float("nan"))
    return {
        "start_m": distances[0] if distances else float("nan"),
        "final_m": final,
        "min_m": min(distances, default=float("nan")),
        "success": bool(final < THRESHOLD_M),
        "distances_m": [round(d, 4) for d in distances],
        "plans": len(plans),
        "plan_s_median": float(np.median(plan_s)) if plan_s else float("nan"),
        "plan_s_max": max(plan_s, default=float("nan")),
        "stale_plans": stale,
        "mixed_plans": mixed,
        "modes": sorted({r.get("mode", "") for r in reports}),
    }


def episode_in_process(seed: int, args: argparse.Namespace) -> dict:
    """The same episode planned in-process (``sim.make`` + ``Planner.plan``, no ROS)."""
    import torch

    import sim
    import world_model
    from planner import Planner

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    env = sim.make("reach", image_size=args.image_size, seed=seed)
    params = load_params(config_file("goal_planner"), "goal_planner")
    model = world_model.load(params["checkpoint"])
    preset = preset_for(params["config"], params["checkpoint"])
    planner = Planner.from_config(preset, model, device="cpu", overrides=args.overrides)
    obs, info = env.reset()
    goal = env.goal()
    distances, plan_s = [info["distance"]], []
    for _ in range(args.steps):
        plan = planner.plan(obs, goal)
        plan_s.append(plan.timings["total"])
        obs, _, _, _, info = env.step(plan.action)
        distances.append(info["distance"])
    env.close()
    return {
        "seed": seed,
        "start_m": distances[0],
        "final_m": distances[-1],
        "min_m": min(distances),
        "success": bool(distances[-1] < THRESHOLD_M),
        "distances_m": [round(d, 4) for d in distances],
        "plan_s_median": float(np.median(plan_s)),
        "plan_s_max": max(plan_s),
    }


def table(rows: list[dict], title: str) -> str:
    lines = [f"{title}", "| seed | start (m) | final (m) | min (m) | success | plan s (med/max) |"]
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        extra = f" stale {r['stale_plans']} mixed {r['mixed_plans']}" if "stale_plans" in r else ""
        lines.append(
            f"| {r['seed']} | {r['start_m']:.3f} | {r['final_m']:.3f} | {r['min_m']:.3f} | "
            f"{'yes' if r['success'] else 'no'} | {r['plan_s_median']:.2f} / "
            f"{r['plan_s_max']:.2f}{extra} |"
        )
    wins = sum(r["success"] for r in rows)
    lines.append(f"success {wins}/{len(rows)}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m planner_ros.reach_bench", description=__doc__)
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 1,4,7")
    parser.add_argument("--steps", type=int, default=20, help="commands per episode")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per planner (0: torch's default)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per episode")
    parser.add_argument("--overrides", nargs="*", default=[], help="planner key=value")
    parser.add_argument("--in-process-only", action="store_true")
    parser.add_argument("--nodes-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("reach_bench.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the episodes, print the tables, write ``--out`` (JSON)."""
    args = parse_args(argv)
    seeds = parse_seeds(args.seeds)
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.in_process_only:
        domain = 90 + os.getpid() % 40
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
        if args.threads > 0:
            env["OMP_NUM_THREADS"] = str(args.threads)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
        context = init_context(domain)
        recorder = Recorder(context)
        rows = []
        with spin_nodes(context, [recorder.node]):
            for seed in seeds:
                rows.append(episode_through_nodes(seed, args, env, recorder))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "distances_m"}))
        recorder.node.destroy_node()
        rclpy.shutdown(context=context)
        result["nodes"] = rows
        print(table(rows, "through the nodes (two processes, as ros2 launch)"))
    if not args.nodes_only:
        rows = [episode_in_process(seed, args) for seed in seeds]
        result["in_process"] = rows
        print(table(rows, "in-process (sim.make + Planner.plan)"))
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
