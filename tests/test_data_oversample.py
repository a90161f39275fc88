"""``TrajectoryDataset(gripper_oversample=k)``: clips that open or close the gripper are listed
k times per epoch, the others once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from world_model.data import TrajectoryDataset, TrajectoryWriter


def write_gripper_dataset(root: Path) -> None:
    """Three episodes of 8 frames, 2 per chunk; the gripper closes at one known step of two."""
    rng = np.random.default_rng(0)
    with TrajectoryWriter(root, control_dt=0.1, episodes_per_chunk=2) as writer:
        for close_at in (3, None, 6):
            states = np.zeros((8, 7), np.float32)
            states[:, :3] = 0.5 + np.cumsum(rng.normal(scale=0.01, size=(8, 3)), axis=0)
            states[:, 3] = np.pi
            if close_at is not None:
                states[close_at:, 6] = 0.4
            frames = rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8)
            writer.add_episode(frames, states, task="grasp")


def expected_events(close_at: int | None, clip_len: int, starts: int) -> list[bool]:
    """Whether the clip starting at each frame spans the closing step (frame close_at - 1 ->
    close_at)."""
    if close_at is None:
        return [False] * starts
    return [start < close_at <= start + clip_len - 1 for start in range(starts)]


def test_gripper_event_clips_are_found_and_repeated(tmp_path: Path) -> None:
    write_gripper_dataset(tmp_path)
    plain = TrajectoryDataset(tmp_path, clip_len=3, shuffle=False)
    events = plain.gripper_events()
    starts = 8 - 3 + 1
    expected = sum((expected_events(c, 3, starts) for c in (3, None, 6)), [])
    assert events.tolist() == expected

    tripled = TrajectoryDataset(tmp_path, clip_len=3, shuffle=False, gripper_oversample=3)
    assert len(tripled.clips) == len(plain.clips) + 2 * int(events.sum())
    counts = {tuple(row): 0 for row in plain.clips.tolist()}
    for row in tripled.clips.tolist():
        counts[tuple(row)] += 1
    assert [counts[tuple(row)] for row in plain.clips.tolist()] == [
        3 if event else 1 for event in expected
    ]
    # Every listed clip still streams (repeats are real clips of the dataset).
    clips = list(tripled)
    assert len(clips) == len(tripled.clips)
    closing = [c for c in clips if (c["actions"][:, 6].abs() > 0.05).any()]
    assert len(closing) == 3 * int(events.sum())


def test_bad_oversample_factor_is_named(tmp_path: Path) -> None:
    write_gripper_dataset(tmp_path)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="gripper_oversample"):
            TrajectoryDataset(tmp_path, clip_len=3, gripper_oversample=bad)
