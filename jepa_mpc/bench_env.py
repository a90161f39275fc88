"""``jepa-mpc bench-env``: env control steps/s (physics + IK, no camera) and camera renders/s
for each backend and image size; prints a table and optionally writes JSON."""

from __future__ import annotations

import time

import numpy as np

from sim.backend import UnknownBackendError, backend_class
from sim.env import FrankaTableEnv
from world_model.console import CommandLineParser
from world_model.files import write_json


def bench_one(backend: str, size: int, steps: int, renders: int) -> dict:
    """Time ``steps`` control steps and ``renders`` camera frames on one backend and size."""
    env = FrankaTableEnv(task="reach", backend=backend, image_size=size, seed=0)
    try:
        env.reset()
        rng = np.random.default_rng(0)
        actions = rng.uniform(env.action_space.low, env.action_space.high, (steps, 7))
        start = time.perf_counter()
        for action in actions:
            env.backend.move_ee(env.safe_target(action))
        step_seconds = time.perf_counter() - start
        env.backend.render()  # warm-up: context creation
        start = time.perf_counter()
        for _ in range(renders):
            env.backend.render()
        render_seconds = time.perf_counter() - start
    finally:
        env.close()
    return {
        "backend": backend,
        "image_size": size,
        "steps_per_s": steps / step_seconds,
        "renders_per_s": renders / render_seconds,
        "env_steps_per_s_with_image": 1.0 / (step_seconds / steps + render_seconds / renders),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc bench-env``."""
    parser = CommandLineParser("jepa-mpc bench-env", description=__doc__)
    parser.add_argument("--backends", default="mujoco,pybullet", help="comma-separated backends")
    parser.add_argument("--sizes", default="128,256", help="comma-separated image sides")
    parser.add_argument("--steps", type=int, default=40, help="control steps to time")
    parser.add_argument("--renders", type=int, default=40, help="renders to time")
    parser.add_argument("--json", default=None, help="write results to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows = []
    print(f"{'backend':<10} {'size':>5} {'steps/s':>9} {'renders/s':>10} {'env steps/s':>12}")
    for backend in args.backends.split(","):
        try:
            backend_class(backend)
        except (ImportError, UnknownBackendError) as error:
            print(f"{backend:<10} skipped: not available ({error})")
            continue
        for size in sizes:
            row = bench_one(backend, size, args.steps, args.renders)
            rows.append(row)
            print(
                f"{backend:<10} {size:>5} {row['steps_per_s']:>9.1f} {row['renders_per_s']:>10.1f}"
                f" {row['env_steps_per_s_with_image']:>12.1f}"
            )
    if args.json:
        write_json(args.json, rows)
    return 0
