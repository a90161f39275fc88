"""``jepa-mpc collect``: record robot trajectories in sim for world-model training.

Each episode is driven by one of two behaviours, drawn per episode: the task's scripted expert
with Gaussian action noise and occasional random actions (purposeful, task-relevant motion), or
a smooth random walk (time-correlated random deltas that cover the workspace, DROID-like
variety). With ``--planner`` (DAgger data) a planner drives every episode toward its final goal
image instead (the scripted expert acting on ``--expert-share`` of the steps), and every frame is
labelled with what the relabelling expert (``sim.experts.LEARNER``) would do there; the
episodes carry those labels and the goal image (``docs/data_format.md``). Episodes run in
parallel worker processes and are written by the main process with
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
    planner: str | None = None  # DAgger data: the planner preset that acts (with ``model``)
    model: str | None = None  # its world model (name or checkpoint folder)
    overrides: tuple[str, ...] = ()  # its config overrides
    expert_share: float = 0.0  # share of the steps on which the expert acts instead


_PLANNERS: dict[tuple, object] = {}  # one planner per worker process and configuration


def planner_for(spec: CollectSpec):
    """The spec's planner, loaded once per process (without the checkpoint's hash check when
    the model is a folder path: ``collect`` checks it once before the workers start)."""
    key = (spec.planner, spec.model, spec.overrides)
    if key not in _PLANNERS:
        from planner import Planner

        _PLANNERS[key] = Planner.from_config(
            spec.planner, spec.model, "cpu", list(spec.overrides), verify=False
        )
    return _PLANNERS[key]


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


def make_env(spec: CollectSpec):
    """A fresh env for one episode (``sim`` is imported in the worker, so that each process
    owns its renderer)."""
    import sim

    return sim.make(
        spec.task,
        backend=spec.backend,
        image_size=spec.image_size,
        seed=spec.seed,
        cameras=spec.cameras,
    )


def episode_record(
    spec: CollectSpec, frames: list, states: list, info: dict, behaviour: str, **extra
) -> dict:
    """What a worker returns for one episode: stacked frames and states, its task, success
    (at its last step) and behaviour, plus ``extra`` arrays."""
    return {
        "frames": np.stack(frames),
        "states": np.stack(states).astype(np.float32),
        "task": spec.task,
        "success": bool(info["success"]),
        "behaviour": behaviour,
        **extra,
    }


def record_episode(spec: CollectSpec) -> dict:
    """Run one episode in a fresh env; returns frames [T+1,H,W,3], states [T+1,7] and labels
    (with a planner: also the expert's labels [T+1, 7] and the goal image)."""
    from sim.experts import expert_action

    if spec.planner is not None:
        return record_planned_episode(spec)
    env = make_env(spec)
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
    return episode_record(spec, frames, states, info, "random_walk" if explore else "expert")


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
    if spec_kwargs.get("planner") is not None:
        check_planner(spec_kwargs)
    spec_kwargs["cameras"] = check_cameras(spec_kwargs.get("cameras", ("exterior",)))
    if spec_kwargs["cameras"] != ("exterior",) and spec_kwargs.get("backend") == "pybullet":
        raise ValueError("--cameras: the pybullet backend renders the exterior camera only")
    specs = [
        CollectSpec(task=tasks[i % len(tasks)], seed=seed + i, **spec_kwargs)
        for i in range(episodes)
    ]
    start = time.perf_counter()
    counts = {"expert": 0, "random_walk": 0, "planner": 0}
    successes = 0
    info = {
        "simulator": specs[0].backend,
        "seed": seed,
        "seeds": [seed, seed + episodes - 1],
        "tasks": tasks,
        "cameras": list(specs[0].cameras),
        "collector": __name__,
    }
    if specs[0].planner is not None:
        info["dagger"] = {
            "planner": specs[0].planner,
            "model": specs[0].model,
            "overrides": list(specs[0].overrides),
            "expert_share": specs[0].expert_share,
            "labels": "sim.experts.LEARNER",
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
                        expert_actions=result.get("expert_actions"),
                        goal_frame=result.get("goal_frame"),
                    )
                    counts[result["behaviour"]] += 1
                    successes += result["success"]
    return {
        "episodes": episodes,
        **counts,
        "success_rate": successes / episodes,
        "seconds": round(time.perf_counter() - start, 2),
    }


def check_planner(spec_kwargs: dict) -> None:
    """Fail before any worker starts when the DAgger settings cannot work: a planner needs a
    model, the expert share is a fraction, and the planner loads (the checkpoint's hashes are
    checked here, once)."""
    from planner import Planner

    if not spec_kwargs.get("model"):
        raise ValueError("--planner needs --model (the world model the planner plans with)")
    share = spec_kwargs.get("expert_share", 0.0)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"--expert-share must be in [0, 1], got {share}")
    Planner.from_config(
        spec_kwargs["planner"], spec_kwargs["model"], "cpu", list(spec_kwargs.get("overrides", ()))
    )


def record_planned_episode(spec: CollectSpec) -> dict:
    """One DAgger episode: the spec's planner acts toward the final goal image (the expert on
    ``expert_share`` of the steps), every frame labelled by the relabelling expert."""
    from sim.experts import LEARNER, expert_action
    from sim.goals import episode_goals

    planner = planner_for(spec)
    env = make_env(spec)
    try:
        rng = np.random.default_rng(spec.seed)
        obs, _ = env.reset(seed=spec.seed)
        goal = episode_goals(env.unwrapped, use_subgoals=False)[-1]
        planner.reset(seed=spec.seed)
        frames, states, labels = [obs["image"]], [obs["state"]], []
        info: dict = {"success": False}
        for _ in range(spec.steps or env.unwrapped.episode_length):
            labels.append(expert_action(env.unwrapped, tolerance=LEARNER))
            if rng.random() < spec.expert_share:
                action = labels[-1]
            else:
                action = planner.plan(obs, goal).action
            obs, _, _, _, info = env.step(action)
            frames.append(obs["image"])
            states.append(obs["state"])
        labels.append(expert_action(env.unwrapped, tolerance=LEARNER))
    finally:
        env.close()
    return episode_record(
        spec,
        frames,
        states,
        info,
        "planner",
        expert_actions=np.stack(labels).astype(np.float32),
        goal_frame=goal["image"],
    )


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
    parser.add_argument(
        "--planner",
        default=None,
        help="DAgger data: this planner preset drives every episode toward its final goal image "
        "and the relabelling expert labels every frame (needs --model)",
    )
    parser.add_argument("--model", default=None, help="the planner's world model")
    parser.add_argument(
        "--expert-share",
        type=float,
        default=0.0,
        dest="expert_share",
        help="with --planner: share of the steps on which the expert acts instead",
    )
    parser.add_argument("overrides", nargs="*", help="with --planner: its config overrides")
    args = parser.parse_args(argv)
    if args.overrides and args.planner is None:
        parser.error(f"overrides {args.overrides} need --planner")
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
            planner=args.planner,
            model=args.model,
            overrides=tuple(args.overrides),
            expert_share=args.expert_share,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc collect: {error}", file=sys.stderr)
        return 2
    print(" ".join(f"{key}={value}" for key, value in summary.items()))
    return 0
