"""``jepa-mpc render``: write a task's reset, goal and subgoal camera frames as PNG files."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

import sim
from sim.tasks import TASK_NAMES
from world_model.console import CommandLineParser
from world_model.files import atomic_write


def write_png(path: Path, image: np.ndarray) -> None:
    """Write ``image`` uint8 [H, W, 3] to ``path`` atomically (temp file, then rename)."""
    atomic_write(path, lambda temp: imageio.imwrite(temp, image, format="png"))


def render_task(
    task: str, out: Path, backend: str = "mujoco", size: int = 256, seed: int = 0
) -> list[Path]:
    """Render reset, goal and subgoal frames of ``task`` into folder ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    env = sim.make(task, backend=backend, image_size=size, seed=seed)
    try:
        observation, _ = env.reset()
        frames = {"reset": observation["image"], "goal": env.unwrapped.goal()["image"]}
        for index, subgoal in enumerate(env.unwrapped.subgoals()):
            frames[f"subgoal_{index}"] = subgoal["image"]
    finally:
        env.close()
    paths = []
    for name, image in frames.items():
        path = out / f"{task}_{name}.png"
        write_png(path, image)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc render``: 0, or 2 with one line on a bad task, backend or size."""
    parser = CommandLineParser("jepa-mpc render", description=__doc__)
    parser.add_argument("--task", default="pick_place", choices=TASK_NAMES, help="sim task")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--backend", default="mujoco", help="simulator backend: mujoco, pybullet")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    args = parser.parse_args(argv)
    try:
        paths = render_task(args.task, args.out, args.backend, args.size, args.seed)
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc render: error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
