"""Toy trajectory data for the training tests: a bright square that moves with the hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from world_model.data import TrajectoryWriter


def write_square_trajectories(root: Path, episodes: int, seed: int = 0) -> Path:
    """``episodes`` episodes of 8 frames (64 px) into the dataset folder ``root``; the square's
    column follows the end effector's x."""
    rng = np.random.default_rng(seed)
    with TrajectoryWriter(root, episodes_per_chunk=2) as writer:
        for _ in range(episodes):
            states = np.zeros((8, 7), np.float32)
            states[:, :3] = 0.5 + np.cumsum(rng.normal(scale=0.03, size=(8, 3)), axis=0)
            states[:, 3] = np.pi
            frames = np.zeros((8, 64, 64, 3), np.uint8)
            for t, x in enumerate(((states[:, 0] - 0.3) * 100).astype(int) % 56):
                frames[t, 20:32, x : x + 8] = 255
            writer.add_episode(frames, states, task="reach", success=True)
    return root
