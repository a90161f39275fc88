"""LeRobot datasets: tiny v2.1 and v3.0 folders written here (pyarrow parquet + H.264 mp4 via
PyAV) read back as episodes and streamed as clips; state mapping, dataset actions, each error
case, and two predictor training steps on a LeRobot folder through ``jepa-mpc train``."""

from __future__ import annotations

import json
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from world_model.data import (
    DatasetError,
    DatasetNotFoundError,
    LeRobotReader,
    TrajectoryDataset,
    TrajectoryReader,
    TrajectoryWriter,
    actions_from_states,
    open_reader,
)
from world_model.data.frames import square_resize
from world_model.train import main as train_main

FPS = 10
HEIGHT, WIDTH = 48, 64
CAMERA = "observation.images.front"
LENGTHS = (10, 12)
TASKS = ("push the cube", "reach the cup")
V2_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
MAX_MEAN_ERROR = 6.0  # mean |decoded - original| in grey levels (lossy H.264, 4:2:0 chroma)


def make_episode(seed: int, length: int, state_width: int = 7):
    """Frames uint8 [T, 48, 64, 3] (an orange square moving right on grey) and states [T, W]."""
    rng = np.random.default_rng(seed)
    frames = np.full((length, HEIGHT, WIDTH, 3), 60 + 40 * seed, np.uint8)
    for t in range(length):
        frames[t, 12:32, 2 + 4 * t : 14 + 4 * t] = (250, 160, 40)
    states = np.zeros((length, state_width), np.float32)
    states[:, :3] = 0.5 + np.cumsum(rng.normal(scale=0.02, size=(length, 3)), axis=0)
    states[:, 3:6] = [np.pi - 0.1, 0.05, 0.2] + rng.normal(scale=0.05, size=(length, 3))
    states[:, 6:] = rng.uniform(0, 1, (length, state_width - 6))
    return frames, states


def write_video(path: Path, frames: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def rows_table(states: np.ndarray, actions: np.ndarray, episode: int, first: int) -> pa.Table:
    length, width = states.shape
    return pa.table(
        {
            "observation.state": pa.array(list(states), pa.list_(pa.float32(), width)),
            "action": pa.array(list(actions), pa.list_(pa.float32())),
            "timestamp": pa.array(np.arange(length) / FPS, pa.float32()),
            "frame_index": pa.array(np.arange(length)),
            "episode_index": pa.array(np.full(length, episode)),
            "index": pa.array(first + np.arange(length)),
            "task_index": pa.array(np.full(length, episode)),
        }
    )


def write_info(root: Path, version: str, width: int, data: str, video: str | None) -> None:
    features = {
        CAMERA: {
            "dtype": "video" if video else "image",
            "shape": [HEIGHT, WIDTH, 3],
            "names": ["h", "w", "c"],
        },
        "observation.state": {"dtype": "float32", "shape": [width], "names": None},
        "action": {"dtype": "float32", "shape": [width], "names": None},
    }
    if width == 9:
        features["observation.state"]["names"] = list("xyzabcdeg")
    info = {"codebase_version": version, "fps": FPS, "chunks_size": 1000, "features": features}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    info |= {"data_path": data, "video_path": video, "total_episodes": len(LENGTHS)}
    (root / "meta/info.json").write_text(json.dumps(info, indent=1))


def write_v21(root: Path, width: int = 7, images: bool = False) -> list:
    """A LeRobot v2.1 folder: one parquet and one mp4 per episode (or PNG images in the parquet
    rows with ``images``); returns the episodes."""
    write_info(root, "v2.1", width, V2_DATA, None if images else V2_VIDEO)
    episodes, lines, first = [], [], 0
    for index, length in enumerate(LENGTHS):
        frames, states = make_episode(index, length, width)
        actions = np.full_like(states, 0.01 * (index + 1))
        data = root / V2_DATA.format(episode_chunk=0, episode_index=index)
        data.parent.mkdir(parents=True, exist_ok=True)
        table = rows_table(states, actions, index, first)
        if images:
            pngs = [
                {"bytes": iio.imwrite("<bytes>", f, extension=".png"), "path": None} for f in frames
            ]
            table = table.append_column(CAMERA, pa.array(pngs))
        else:
            video = V2_VIDEO.format(episode_chunk=0, video_key=CAMERA, episode_index=index)
            write_video(root / video, frames)
        pq.write_table(table, data)
        lines.append(
            json.dumps({"episode_index": index, "tasks": [TASKS[index]], "length": length})
        )
        episodes.append((frames, states, actions))
        first += length
    (root / "meta/episodes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "meta/tasks.jsonl").write_text(
        "\n".join(json.dumps({"task_index": i, "task": t}) for i, t in enumerate(TASKS))
    )
    return episodes


def write_v30(root: Path) -> list:
    """A LeRobot v3.0 folder: both episodes in one parquet and one mp4, indexed by
    ``meta/episodes/`` (row ranges and video time ranges)."""
    write_info(root, "v3.0", 7, V3_DATA, V3_VIDEO)
    episodes = [make_episode(index, length) for index, length in enumerate(LENGTHS)]
    tables, rows, first = [], [], 0
    for index, (frames, states) in enumerate(episodes):
        tables.append(rows_table(states, np.zeros_like(states), index, first))
        rows.append(
            {
                "episode_index": index,
                "tasks": [TASKS[index]],
                "length": len(frames),
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": first,
                "dataset_to_index": first + len(frames),
                f"videos/{CAMERA}/chunk_index": 0,
                f"videos/{CAMERA}/file_index": 0,
                f"videos/{CAMERA}/from_timestamp": first / FPS,
                f"videos/{CAMERA}/to_timestamp": (first + len(frames)) / FPS,
            }
        )
        first += len(frames)
    data = root / V3_DATA.format(chunk_index=0, file_index=0)
    data.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), data)
    write_video(
        root / V3_VIDEO.format(video_key=CAMERA, chunk_index=0, file_index=0),
        np.concatenate([frames for frames, _ in episodes]),
    )
    index_file = root / "meta/episodes/chunk-000/file-000.parquet"
    index_file.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), index_file)
    return [(frames, states, None) for frames, states in episodes]


def assert_frames_close(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.shape == original.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(np.int16) - original.astype(np.int16)).mean(axis=(1, 2, 3))
    assert error.max() < MAX_MEAN_ERROR, error


@pytest.fixture(scope="module")
def v21(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("lerobot_v21")
    return root, write_v21(root)


def test_v21_episodes_round_trip(v21) -> None:
    root, episodes = v21
    reader = open_reader(root)
    assert isinstance(reader, LeRobotReader) and len(reader) == 2
    assert [e["length"] for e in reader.episodes] == list(LENGTHS)
    assert reader.meta["tasks"] == list(TASKS) and reader.meta["fps"] == FPS
    assert reader.camera == CAMERA
    for index, (frames, states, _) in enumerate(episodes):
        episode = reader.episode(index)
        assert_frames_close(episode.frames, frames)
        np.testing.assert_array_equal(episode.states, states)
        expected = actions_from_states(torch.from_numpy(states)).numpy()
        np.testing.assert_allclose(episode.actions, expected, atol=1e-6)
        assert not episode.actions[-1].any() and episode.task == TASKS[index]


def test_frames_are_cropped_and_resized_to_the_image_size(v21) -> None:
    root, episodes = v21
    frames = LeRobotReader(root, camera="front", image_size=32).episode(1).frames
    assert frames.shape == (LENGTHS[1], 32, 32, 3)
    assert_frames_close(frames, np.stack([square_resize(f, 32) for f in episodes[1][0]]))


def test_dataset_actions_are_the_stored_actions(v21) -> None:
    root, episodes = v21
    actions = LeRobotReader(root, use_dataset_actions=True).episode(1).actions
    np.testing.assert_allclose(actions[:-1], episodes[1][2][:-1])
    assert not actions[-1].any()


def test_clips_stream_from_a_lerobot_folder(v21) -> None:
    root, episodes = v21
    dataset = TrajectoryDataset(root, clip_len=3, frame_stride=2, shuffle=False)
    clips = list(dataset)
    assert len(clips) == (10 - 4) + (12 - 4)
    clip = clips[7]  # episode 1, start 1: frames 1, 3, 5
    assert int(clip["episode"]) == 1 and int(clip["start"]) == 1
    frames, states, _ = episodes[1]
    assert_frames_close(clip["frames"].numpy(), frames[[1, 3, 5]])
    torch.testing.assert_close(clip["states"], torch.from_numpy(states[[1, 3, 5]]))
    torch.testing.assert_close(clip["actions"], actions_from_states(clip["states"]))


def test_images_stored_in_the_parquet_rows(tmp_path) -> None:
    episodes = write_v21(tmp_path, images=True)
    episode = LeRobotReader(tmp_path).episode(1)
    np.testing.assert_array_equal(episode.frames, episodes[1][0])  # PNG is lossless


def test_v30_concatenated_files_split_into_episodes(tmp_path) -> None:
    episodes = write_v30(tmp_path)
    reader = LeRobotReader(tmp_path)
    assert [e["task"] for e in reader.episodes] == list(TASKS)
    for index, (frames, states, _) in enumerate(episodes):
        episode = reader.episode(index)
        assert_frames_close(episode.frames, frames)
        np.testing.assert_array_equal(episode.states, states)


def test_wide_state_needs_a_column_mapping(tmp_path) -> None:
    episodes = write_v21(tmp_path, width=9)
    with pytest.raises(DatasetError, match="9 values.*state_columns"):
        LeRobotReader(tmp_path)
    mapping = [0, 1, 2, "a", "b", "c", None]
    states = LeRobotReader(tmp_path, state_columns=mapping).episode(0).states
    np.testing.assert_array_equal(states[:, :6], episodes[0][1][:, :6])
    assert not states[:, 6].any()
    with pytest.raises(DatasetError, match="'q'"):
        LeRobotReader(tmp_path, state_columns=[0, 1, 2, 3, 4, 5, "q"])
    with pytest.raises(DatasetError, match="7-D 'action'"):
        LeRobotReader(tmp_path, state_columns=mapping, use_dataset_actions=True)


def test_open_reader_keeps_native_datasets(tmp_path) -> None:
    frames, states = make_episode(0, 4)
    with TrajectoryWriter(tmp_path) as writer:
        writer.add_episode(frames, states)
    assert isinstance(open_reader(tmp_path), TrajectoryReader)
    with pytest.raises(ValueError, match="LeRobot datasets only"):
        open_reader(tmp_path, camera="front")


def test_broken_folders_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError, match="meta/info.json"):
        LeRobotReader(tmp_path)
    root = tmp_path / "d"
    episodes = write_v21(root)
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v1.6"}))
    with pytest.raises(DatasetError, match="unsupported codebase_version 'v1.6'"):
        LeRobotReader(root)
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="camera 'side'.*available"):
        LeRobotReader(root, camera="side")
    video = root / V2_VIDEO.format(episode_chunk=0, video_key=CAMERA, episode_index=1)
    write_video(video, episodes[1][0][:-1])  # one frame short of the 12 parquet rows
    with pytest.raises(DatasetError, match="frame count mismatch, 11 frames"):
        LeRobotReader(root).episode(1)
    video.write_bytes(b"not a video")
    with pytest.raises(DatasetError, match="unreadable video"):
        LeRobotReader(root).episode(1)
    video.unlink()
    with pytest.raises(DatasetNotFoundError, match="episode_000001.mp4: video file"):
        LeRobotReader(root)
    (root / V2_DATA.format(episode_chunk=0, episode_index=0)).unlink()
    with pytest.raises(DatasetNotFoundError, match="episode_000000.parquet: parquet file"):
        LeRobotReader(root)


def test_train_predictor_on_a_lerobot_folder(v21, tmp_path, capsys) -> None:
    root, _ = v21
    out = tmp_path / "run"
    args = ["predictor", "--config", "predictor_tiny", "--data", str(root), "--out", str(out)]
    assert train_main([*args, "steps=2", "device=cpu"]) == 0
    assert "16 clips" in capsys.readouterr().out  # (10 - 3) + (12 - 3) clips of 4 frames
    assert (out / "model").is_dir()
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header + 2 steps
    wrong = ["predictor", "--config", "predictor_tiny", "--data", str(root)]
    assert train_main([*wrong, "--out", str(tmp_path / "bad"), "data.state_columns=[0]"]) == 2
    assert "state_columns needs 7 entries" in capsys.readouterr().err
