"""Trajectory format: writer/reader round trip, strided clips with re-derived actions, resumable
and shardable streams, atomic chunk writes, per-chunk sha256 checks and clear errors on broken
files; block masks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from robots.franka import euler_to_matrix, integrate_pose, pose_delta
from world_model.data import (
    DatasetError,
    DatasetNotFoundError,
    TrajectoryDataset,
    TrajectoryReader,
    TrajectoryWriter,
)
from world_model.masks import MaskSpec, sample_mask, sample_mask_indices

SIZE = 16


def random_episode(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Random frames [T, 16, 16, 3] and a smooth random ee trajectory [T, 7]."""
    states = np.zeros((length, 7), np.float32)
    states[:, :3] = 0.5 + np.cumsum(rng.normal(scale=0.02, size=(length, 3)), axis=0)
    states[:, 3:6] = [np.pi - 0.1, 0.05, 0.2] + np.cumsum(
        rng.normal(scale=0.05, size=(length, 3)), axis=0
    )
    states[:, 6] = rng.uniform(0, 1, length)
    frames = rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8)
    return frames, states


def assert_same_poses(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal positions/gripper and rotation matrices (Euler angles may wrap by 2 pi)."""
    torch.testing.assert_close(
        actual[:, [0, 1, 2, 6]], expected[:, [0, 1, 2, 6]], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        euler_to_matrix(actual[:, 3:6]), euler_to_matrix(expected[:, 3:6]), atol=1e-5, rtol=0
    )


def write_dataset(root: Path, lengths=(9, 7, 12, 6, 10), per_chunk: int = 2) -> list:
    rng = np.random.default_rng(0)
    episodes = []
    with TrajectoryWriter(root, control_dt=0.25, episodes_per_chunk=per_chunk) as writer:
        for number, length in enumerate(lengths):
            frames, states = random_episode(rng, length)
            writer.add_episode(frames, states, task=f"task{number % 2}", success=number == 1)
            episodes.append((frames, states))
    return episodes


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, list]:
    root = tmp_path / "data"
    return root, write_dataset(root)


def test_round_trip_and_meta(dataset) -> None:
    root, episodes = dataset
    reader = TrajectoryReader(root)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["num_episodes"] == 5 and len(meta["chunks"]) == 3
    assert meta["image_size"] == [SIZE, SIZE] and meta["fps"] == pytest.approx(4.0)
    assert meta["tasks"] == ["task0", "task1"]
    assert meta["num_frames"] == sum(len(f) for f, _ in episodes)
    for index, (frames, states) in enumerate(episodes):
        episode = reader.episode(index)
        np.testing.assert_array_equal(episode.frames, frames)
        np.testing.assert_array_equal(episode.states, states)
        assert episode.task == f"task{index % 2}" and episode.success == (index == 1)
        # Stored actions were derived from the states: action t takes state t to t+1.
        np.testing.assert_array_equal(episode.actions[-1], 0.0)
        moved = integrate_pose(
            torch.from_numpy(states[:-1]), torch.from_numpy(episode.actions[:-1])
        )
        assert_same_poses(moved, torch.from_numpy(states[1:]))


def test_append_to_existing_dataset(dataset) -> None:
    root, episodes = dataset
    frames, states = random_episode(np.random.default_rng(1), 5)
    with TrajectoryWriter(root, control_dt=0.25) as writer:
        assert writer.add_episode(frames, states, task="task2") == len(episodes)
    reader = TrajectoryReader(root)
    assert len(reader) == len(episodes) + 1
    np.testing.assert_array_equal(reader.episode(len(episodes)).frames, frames)
    with pytest.raises(DatasetError, match="control_dt"):
        TrajectoryWriter(root, control_dt=0.1)


def test_strided_clips_rederive_actions(dataset) -> None:
    root, episodes = dataset
    stream = TrajectoryDataset(root, clip_len=3, frame_stride=2, shuffle=False)
    clips = list(stream)
    assert len(clips) == sum(len(f) - 5 + 1 for f, _ in episodes)
    for clip in clips[:: len(clips) // 7]:
        frames, states = episodes[int(clip["episode"])]
        rows = int(clip["start"]) + 2 * np.arange(3)
        np.testing.assert_array_equal(clip["frames"].numpy(), frames[rows])
        np.testing.assert_array_equal(clip["states"].numpy(), states[rows])
        expected = pose_delta(
            torch.from_numpy(states[rows[:-1]]).double(),
            torch.from_numpy(states[rows[1:]]).double(),
        )
        torch.testing.assert_close(clip["actions"][:-1], expected.float(), atol=1e-6, rtol=0)
        assert torch.all(clip["actions"][-1] == 0)


def test_stream_is_deterministic_resumable_and_sharded(dataset) -> None:
    root, _ = dataset
    kwargs = {"clip_len": 4, "batch_size": 3, "seed": 5, "chunks_in_memory": 2}
    full = [(b["episode"].tolist(), b["start"].tolist()) for b in TrajectoryDataset(root, **kwargs)]
    workers = DataLoader(TrajectoryDataset(root, **kwargs), batch_size=None, num_workers=2)
    assert [(b["episode"].tolist(), b["start"].tolist()) for b in workers] == full
    resumed = TrajectoryDataset(root, start_item=2, **kwargs)
    assert [(b["episode"].tolist(), b["start"].tolist()) for b in resumed] == full[2:]
    shards = [
        {
            (e, s)
            for b in TrajectoryDataset(root, clip_len=4, rank=r, world_size=2)
            for e, s in [(int(b["episode"]), int(b["start"]))]
        }
        for r in range(2)
    ]
    assert not shards[0] & shards[1] and len(shards[0]) == len(shards[1])
    tasks = TrajectoryDataset(root, clip_len=4, tasks=["task1"])
    assert {int(clip["episode"]) for clip in tasks} == {1, 3}


def test_failed_chunk_write_leaves_dataset_unchanged(dataset, monkeypatch) -> None:
    root, episodes = dataset
    before = (root / "meta.json").read_bytes()
    files_before = sorted(p.name for p in (root / "chunks").iterdir())

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a chunk")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    writer = TrajectoryWriter(root, control_dt=0.25, episodes_per_chunk=1)
    frames, states = random_episode(np.random.default_rng(2), 4)
    with pytest.raises(OSError, match="disk full"):
        writer.add_episode(frames, states, task="task0")
    assert (root / "meta.json").read_bytes() == before
    assert sorted(p.name for p in (root / "chunks").iterdir()) == files_before
    reader = TrajectoryReader(root)
    assert len(reader) == len(episodes)
    np.testing.assert_array_equal(reader.episode(4).frames, episodes[4][0])


def test_truncated_corrupt_or_missing_chunk_is_named(dataset) -> None:
    root, _ = dataset
    chunk = root / "chunks" / "chunk-000001.npz"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="chunk-000001.npz.*truncated"):
        TrajectoryReader(root).episode(2)
    chunk.write_bytes(b"\0" * len(data))
    with pytest.raises(DatasetError, match="chunk-000001.npz: corrupt chunk"):
        list(TrajectoryDataset(root, clip_len=2, shuffle=False))
    drop_hashes(root)  # without a recorded hash the same bytes fail when parsed
    with pytest.raises(DatasetError, match="chunk-000001.npz: unreadable"):
        list(TrajectoryDataset(root, clip_len=2, shuffle=False))
    chunk.unlink()
    with pytest.raises(DatasetNotFoundError, match="chunk-000001.npz"):
        TrajectoryReader(root).episode(3)
    with pytest.raises(DatasetNotFoundError, match="meta.json"):
        TrajectoryReader(root / "nowhere")


def drop_hashes(root: Path) -> dict:
    """Rewrite meta.json as datasets written before chunk hashes were (no ``sha256`` keys)."""
    meta = json.loads((root / "meta.json").read_text())
    for chunk in meta["chunks"]:
        del chunk["sha256"]
    (root / "meta.json").write_text(json.dumps(meta))
    return meta


# Byte 10 of a zip is the first member's modification time: zip and numpy never check it.
HEADER_TIME, MIDDLE = 10, -1  # MIDDLE: a pixel of the frames (caught by zip's CRC-32 too)


def flip_byte(root: Path, where: int, chunk: int = 1) -> None:
    """Flip one byte of a chunk file in place (same size); ``MIDDLE`` = its middle byte."""
    path = root / "chunks" / f"chunk-{chunk:06d}.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if where == MIDDLE else where] ^= 0xFF
    path.write_bytes(bytes(data))


def test_chunk_sha256_is_written(dataset) -> None:
    root, _ = dataset
    chunks = json.loads((root / "meta.json").read_text())["chunks"]
    assert len(chunks) == 3
    for chunk in chunks:
        assert chunk["sha256"] == hashlib.sha256((root / chunk["file"]).read_bytes()).hexdigest()


@pytest.mark.parametrize("where", [HEADER_TIME, MIDDLE])
def test_flipped_byte_is_a_corrupt_chunk_error(dataset, where: int) -> None:
    root, _ = dataset
    recorded = json.loads((root / "meta.json").read_text())["chunks"][1]["sha256"]
    flip_byte(root, where)
    actual = hashlib.sha256((root / "chunks" / "chunk-000001.npz").read_bytes()).hexdigest()
    reader = TrajectoryReader(root)
    np.testing.assert_array_equal(reader.episode(0).frames, dataset[1][0][0])  # chunk 0 is fine
    with pytest.raises(DatasetError, match="chunk-000001.npz: corrupt chunk") as info:
        reader.episode(2)
    assert f"expected {recorded[:16]}" in str(info.value)
    assert f"actual {actual[:16]}" in str(info.value)
    with pytest.raises(DatasetError, match="chunk-000001.npz: corrupt chunk"):
        list(TrajectoryDataset(root, clip_len=2, shuffle=False))


def test_dataset_without_hashes_loads_unverified(dataset) -> None:
    root, episodes = dataset
    drop_hashes(root)
    reader = TrajectoryReader(root)
    for index, (frames, states) in enumerate(episodes):
        np.testing.assert_array_equal(reader.episode(index).frames, frames)
        np.testing.assert_array_equal(reader.episode(index).states, states)
    flip_byte(root, HEADER_TIME)  # an old index has no hash to compare with: not noticed
    np.testing.assert_array_equal(TrajectoryReader(root).episode(2).frames, episodes[2][0])


def test_append_keeps_chunk_hashes(dataset) -> None:
    root, episodes = dataset
    before = json.loads((root / "meta.json").read_text())["chunks"]
    frames, states = random_episode(np.random.default_rng(4), 5)
    with TrajectoryWriter(root, control_dt=0.25) as writer:
        writer.add_episode(frames, states, task="task2")
    after = json.loads((root / "meta.json").read_text())["chunks"]
    assert after[:3] == before and len(after) == 4
    assert after[3]["sha256"] == hashlib.sha256((root / after[3]["file"]).read_bytes()).hexdigest()
    # Appending to a dataset written before hashes: old chunks stay unhashed, new ones get one.
    drop_hashes(root)
    with TrajectoryWriter(root, control_dt=0.25) as writer:
        writer.add_episode(frames, states, task="task2")
    chunks = json.loads((root / "meta.json").read_text())["chunks"]
    assert ["sha256" in chunk for chunk in chunks] == [False] * 4 + [True]
    reader = TrajectoryReader(root)
    assert len(reader) == len(episodes) + 2
    np.testing.assert_array_equal(reader.episode(len(episodes) + 1).frames, frames)


@pytest.mark.parametrize("value", ["abc", "A" * 64, 7, None])
def test_malformed_sha256_in_meta_is_named(dataset, value) -> None:
    root, _ = dataset
    meta = json.loads((root / "meta.json").read_text())
    meta["chunks"][0]["sha256"] = value
    (root / "meta.json").write_text(json.dumps(meta))
    if value is None:  # null = no hash recorded, like an old dataset
        assert len(TrajectoryReader(root).load_chunk(0)["lengths"]) == 2
        return
    with pytest.raises(DatasetError, match=r"meta.json: chunks\[0\].sha256 must be 64"):
        TrajectoryReader(root)


def test_bad_episodes_rejected(tmp_path: Path) -> None:
    frames, states = random_episode(np.random.default_rng(3), 4)
    writer = TrajectoryWriter(tmp_path / "d", image_size=(SIZE, SIZE))
    with pytest.raises(DatasetError, match="uint8"):
        writer.add_episode(frames.astype(np.float32), states)
    bad = states.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DatasetError, match="NaN"):
        writer.add_episode(frames, bad)
    with pytest.raises(DatasetError, match="dataset holds"):
        writer.add_episode(frames[:, :8], states)
    with pytest.raises(DatasetError, match="cannot fill"):
        writer.add_episode(frames, states)
        writer.close()
        TrajectoryDataset(tmp_path / "d", clip_len=5)


def test_block_masks() -> None:
    generator = torch.Generator().manual_seed(0)
    grid = (2, 4, 4)
    for _ in range(20):
        mask = sample_mask(MaskSpec(num_blocks=2, scale=0.7), grid, generator)
        assert mask.shape == (32,) and 0 < int(mask.sum()) < 32
        assert torch.equal(mask[:16], mask[16:])  # the same rectangles at every time step
    context, target = sample_mask_indices(MaskSpec(), 3, grid, generator)
    assert context.shape[0] == target.shape[0] == 3
    for row in range(3):
        assert not set(context[row].tolist()) & set(target[row].tolist())
