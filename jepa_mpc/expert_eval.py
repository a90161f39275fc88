"""Success rate of the scripted experts over seeded episodes (a benchmark script, not a test).

Usage::

    python -m jepa_mpc.expert_eval --tasks reach,pick_place --seeds 20 [--size 64] [--json f]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sim
from sim.experts import expert_action
from world_model.files import write_json


def evaluate(task: str, seeds: int, image_size: int, backend: str = "mujoco") -> dict:
    """Run the expert for one full episode per seed; returns success rate and mean distance."""
    env = sim.make(task, backend=backend, image_size=image_size)
    successes, distances, start = [], [], time.perf_counter()
    try:
        for seed in range(seeds):
            env.reset(seed=seed)
            truncated, info = False, {}
            while not truncated:
                _, _, _, truncated, info = env.step(expert_action(env))
            successes.append(info["success"])
            distances.append(info["distance"])
    finally:
        env.close()
    return {
        "task": task,
        "backend": backend,
        "episodes": seeds,
        "success_rate": float(np.mean(successes)),
        "mean_final_distance": float(np.mean(distances)),
        "failed_seeds": [s for s, ok in enumerate(successes) if not ok],
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jepa_mpc.expert_eval", description=__doc__)
    parser.add_argument("--tasks", default="reach,push,grasp,pick_place")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="image size (small = fast)")
    parser.add_argument("--backend", default="mujoco")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    print(f"{'task':<12} {'success':>8} {'final dist (m)':>15} {'s':>6}  failed seeds")
    for task in args.tasks.split(","):
        row = evaluate(task, args.seeds, args.size, args.backend)
        results.append(row)
        print(
            f"{task:<12} {row['success_rate']:>8.2f} {row['mean_final_distance']:>15.4f}"
            f" {row['seconds']:>6.1f}  {row['failed_seeds']}"
        )
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
