"""``jepa-mpc collect``: record robot trajectories in sim for world-model training.

Each episode is driven by one of two behaviours, drawn per episode: the task's scripted expert
with Gaussian action noise and occasional random actions (purposeful, task-relevant motion), or
a smooth random walk (time-correlated random deltas that cover the workspace, DROID-like
variety). Episodes run in parallel worker processes and are written by the main process with
``world_model.data.TrajectoryWriter`` (chunked, atomic). Frames are recorded at the input size of
the model they train (default 128 px, sim-small's), so that training resizes nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.backend import BACKENDS, CONTROL_DT
from sim.scene import check_cameras
from sim.tasks import TASK_NAMES, TRAINING_SEEDS_START
from world_model.console import CommandLineParser, progress_bar

# The input size of sim-small (world_model/checkpoints/sim-small/config.json, "small" presets):
# data recorded at another size is resized on every training step.
DEFAULT_IMAGE_SIZE = 128


@dataclass(frozen=True)
class CollectSpec:
    """What one worker needs to record one episode."""

    task: str
    seed: int
    backend: str = "mujoco"
    image_size: int = DEFAULT_IMAGE_SIZE
    cameras: tuple[str, ...] = ("exterior",)  # views side by side in each frame
    steps: int | None = None  # control steps; None = the task's episode_length
    explore: float = 0.3  # probability that an episode is a random walk
    noise: float = 0.01  # std of the expert's action noise (metres / radians)
    random_action_prob: float = 0.1  # per-step chance the expert's action is replaced


def random_walk_action(
    previous: np.ndarray, rng: np.random.Generator, high: np.ndarray
) -> np.ndarray:
    """A time-correlated random delta [7]: 70 % of the previous one plus fresh noise."""
    fresh = rng.uniform(-high, high)
    fresh[3:6] *= 0.2  # gentle rotations: the tasks keep the hand pointing down
    action = 0.7 * previous + 0.3 * fresh * 2.0
    if rng.random() < 0.1:
        action[6] = rng.choice([-1.0, 1.0])  # occasionally open or close the gripper
    else:
        action[6] = 0.0
    return np.clip(action, -high, high).astype(np.float32)


def record_episode(spec: CollectSpec) -> dict:
    """Run one episode in a fresh env; returns frames [T+1,H,W,3], states [T+1,7] and labels."""
    import sim  # imported in the worker so each process owns its renderer
    from sim.experts import expert_action

    env = sim.make(
        spec.task,
        backend=spec.backend,
        image_size=spec.image_size,
        seed=spec.seed,
        cameras=spec.cameras,
    )
    try:
        rng = np.random.default_rng(spec.seed)
        obs, _ = env.reset(seed=spec.seed)
        steps = spec.steps or env.unwrapped.episode_length
        high = env.action_space.high.astype(np.float64)
        explore = rng.random() < spec.explore
        frames, states = [obs["image"]], [obs["state"]]
        action = np.zeros(7, dtype=np.float32)
        info: dict = {"success": False}
        for _ in range(steps):
            if explore:
                action = random_walk_action(action, rng, high)
            elif rng.random() < spec.random_action_prob:
                action = rng.uniform(-high, high).astype(np.float32)
            else:
                action = expert_action(env.unwrapped, noise=spec.noise, rng=rng)
            obs, _, _, _, info = env.step(action)
            frames.append(obs["image"])
            states.append(obs["state"])
    finally:
        env.close()
    return {
        "frames": np.stack(frames),
        "states": np.stack(states).astype(np.float32),
        "task": spec.task,
        "success": bool(info["success"]),
        "behaviour": "random_walk" if explore else "expert",
    }


def collect(
    out: str | Path,
    tasks: list[str],
    episodes: int,
    seed: int = TRAINING_SEEDS_START,
    workers: int = 2,
    progress: bool = True,
    **spec_kwargs,
) -> dict:
    """Record ``episodes`` episodes (tasks round-robin) into the dataset folder ``out``.

    Episode i uses the scene of ``reset(seed + i)``; ``seed`` must lie in the training range
    (``TRAINING_SEEDS_START`` and up), which the benchmark never evaluates on.

    Returns:
        a summary: episodes written, expert/random split, success rate, seconds.
    """
    from world_model.data import TrajectoryWriter

    for task in tasks:
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if seed < TRAINING_SEEDS_START:
        raise ValueError(
            f"--seed {seed} is in the evaluation range (below {TRAINING_SEEDS_START:,}, the "
            f"seeds jepa-mpc bench uses): training data must use --seed {TRAINING_SEEDS_START} "
            "or above"
        )
    spec_kwargs["cameras"] = check_cameras(spec_kwargs.get("cameras", ("exterior",)))
    if spec_kwargs["cameras"] != ("exterior",) and spec_kwargs.get("backend") == "pybullet":
        raise ValueError("--cameras: the pybullet backend renders the exterior camera only")
    specs = [
        CollectSpec(task=tasks[i % len(tasks)], seed=seed + i, **spec_kwargs)
        for i in range(episodes)
    ]
    start = time.perf_counter()
    counts = {"expert": 0, "random_walk": 0}
    successes = 0
    info = {
        "simulator": specs[0].backend,
        "seed": seed,
        "seeds": [seed, seed + episodes - 1],
        "tasks": tasks,
        "cameras": list(specs[0].cameras),
        "collector": __name__,
    }
    with TrajectoryWriter(out, control_dt=CONTROL_DT, info=info) as writer:
        with _pool(workers) as pool:
            results = pool.imap(record_episode, specs) if pool else map(record_episode, specs)
            with progress_bar(episodes, "collect", "episode", disable=not progress) as bar:
                for result in results:
                    bar.update(1)
                    writer.add_episode(
                        result["frames"],
                        result["states"],
                        task=result["task"],
                        success=result["success"],
                    )
                    counts[result["behaviour"]] += 1
                    successes += result["success"]
    return {
        "episodes": episodes,
        **counts,
        "success_rate": successes / episodes,
        "seconds": round(time.perf_counter() - start, 2),
    }


class _pool:
    """A spawn-context process pool, or None (run inline) for a single worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            self.pool = mp.get_context("spawn").Pool(self.workers)
        return self.pool

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def main(argv: list[str] | None = None) -> int:
    """``jepa-mpc collect --task reach,grasp --episodes 100 --out data/sim``."""
    parser = CommandLineParser("jepa-mpc collect", description=__doc__)
    parser.add_argument("--task", default="reach", help="comma-separated task names")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to record")
    parser.add_argument("--out", required=True, help="dataset folder (appended to if present)")
    parser.add_argument("--backend", default="mujoco", choices=sorted(BACKENDS), help="simulator")
    parser.add_argument(
        "--image-size",
        type=int,
        default=DEFAULT_IMAGE_SIZE,
        help="camera pixels: the input size of the model to train (sim-small and the small "
        "presets: 128)",
    )
    parser.add_argument(
        "--cameras",
        default="exterior",
        help="comma-separated views side by side in each frame: exterior, wrist (a model with "
        "views: 2 takes exterior,wrist)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="control steps per episode (default: the task's)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=TRAINING_SEEDS_START,
        help="seed of the first episode (training range: %(default)s and up)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--explore", type=float, default=0.3, help="share of random walks")
    parser.add_argument("--noise", type=float, default=0.01, help="expert action noise std")
    args = parser.parse_args(argv)
    try:
        summary = collect(
            args.out,
            [t.strip() for t in args.task.split(",") if t.strip()],
            args.episodes,
            seed=args.seed,
            workers=args.workers,
            backend=args.backend,
            image_size=args.image_size,
            cameras=args.cameras,
            steps=args.steps,
            explore=args.explore,
            noise=args.noise,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc collect: {error}", file=sys.stderr)
        return 2
    print(" ".join(f"{key}={value}" for key, value in summary.items()))
    return 0
