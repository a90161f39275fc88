"""LeRobot datasets (``codebase_version`` v2.0, v2.1, v3.0: parquet + mp4) read as trajectory
episodes: ``LeRobotReader`` has ``TrajectoryReader``'s interface (one LeRobot episode per chunk),
so ``TrajectoryDataset`` streams its clips; ``open_reader`` picks the reader for a folder.

Needs ``pyarrow`` (tables) and ``av`` (PyAV, video decoding, see ``frames.py``); both are
imported on first use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robots.franka import STATE_NAMES
from world_model.data.format import (
    DatasetError,
    DatasetNotFoundError,
    Episode,
    TrajectoryReader,
    actions_from_states,
)
from world_model.data.frames import decode_images, decode_video, optional_import

INFO_FILE = "meta/info.json"
EPISODES_JSONL = "meta/episodes.jsonl"
EPISODES_DIR = "meta/episodes"
V2_VERSIONS = ("v2.0", "v2.1")
V3_VERSIONS = ("v3.0",)
STATE_KEY = "observation.state"
ACTION_KEY = "action"
CAMERA_PREFIX = "observation.images."
FRAME_DTYPES = ("video", "image")

StateColumn = int | str | None


@dataclass(frozen=True)
class EpisodeSource:
    """Where one episode lives: its rows of ``data_file`` (selected by ``episode_index``) and
    its frames in ``video_file`` between ``from_timestamp`` and ``to_timestamp`` seconds
    (None for a camera stored as images inside the parquet rows)."""

    episode_index: int
    data_file: Path
    video_file: Path | None
    from_timestamp: float = 0.0
    to_timestamp: float = math.inf


def is_lerobot_dataset(root: str | Path) -> bool:
    """Whether ``root`` looks like a LeRobot dataset (has ``meta/info.json``)."""
    return (Path(root) / INFO_FILE).is_file()


def read_info(root: str | Path) -> dict[str, Any]:
    """Read and check ``root/meta/info.json`` (version, fps, features, path templates)."""
    path = Path(root) / INFO_FILE
    if not path.is_file():
        raise DatasetNotFoundError(f"no LeRobot dataset at {root} (missing {INFO_FILE})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: invalid JSON ({error})") from None
    version = info.get("codebase_version") if isinstance(info, dict) else None
    if version not in V2_VERSIONS + V3_VERSIONS:
        raise DatasetError(
            f"{path}: unsupported codebase_version {version!r} "
            f"(supported: {', '.join(V2_VERSIONS + V3_VERSIONS)})"
        )
    missing = [key for key in ("fps", "features", "data_path") if key not in info]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing}")
    return info


def open_reader(source: Any, **options: Any) -> Any:
    """The reader for ``source``: a reader object is returned as is, a LeRobot folder (with
    ``meta/info.json``) gets a ``LeRobotReader(source, **options)``, any other folder a
    ``TrajectoryReader`` (which takes no options)."""
    if hasattr(source, "load_chunk") and hasattr(source, "episodes"):
        if options:
            raise ValueError(f"reader options {sorted(options)} given with an opened reader")
        return source
    if is_lerobot_dataset(source):
        return LeRobotReader(source, **options)
    if options:
        raise ValueError(f"options {sorted(options)} apply to LeRobot datasets only: {source}")
    return TrajectoryReader(source)


def pick_camera(features: dict[str, dict], camera: str | None) -> str:
    """The frame feature to read: ``camera`` (full key or the part after
    ``observation.images.``), else the first ``observation.images.*`` video/image feature."""
    cameras = [key for key, spec in features.items() if spec.get("dtype") in FRAME_DTYPES]
    if not cameras:
        raise DatasetError("the dataset has no video or image feature to use as the camera")
    if camera is None:
        preferred = [key for key in cameras if key.startswith(CAMERA_PREFIX)]
        return (preferred or cameras)[0]
    for key in (camera, CAMERA_PREFIX + camera):
        if key in cameras:
            return key
    raise DatasetError(f"camera {camera!r} is not a video/image feature; available: {cameras}")


def state_mapping(
    features: dict[str, dict], state_key: str, columns: list[StateColumn] | None
) -> np.ndarray:
    """int64 [7]: for each of [x, y, z, roll, pitch, yaw, gripper] the index into the
    ``state_key`` vector, or -1 for "fill with 0".

    Args:
        columns: None when the vector already is the 7-D state in that layout; else 7 entries,
            each an index into the vector, a name from the feature's ``names``, or None (0).
    """
    if state_key not in features:
        raise DatasetError(f"no {state_key!r} feature; features: {sorted(features)}")
    spec = features[state_key]
    width = int(np.prod(spec.get("shape") or [1]))
    names = spec.get("names")
    if isinstance(names, dict):  # e.g. {"motors": [...]}
        names = next(iter(names.values()), None)
    names = list(names) if isinstance(names, list) else []
    if columns is None:
        if width != len(STATE_NAMES):
            raise DatasetError(
                f"{state_key!r} has {width} values {names or ''}, not the 7-D "
                f"{list(STATE_NAMES)} end-effector state; give state_columns: 7 entries "
                "(index or name into it, or null for 0), e.g. [0, 1, 2, 3, 4, 5, null]"
            )
        return np.arange(width, dtype=np.int64)
    if len(columns) != len(STATE_NAMES):
        raise DatasetError(
            f"state_columns needs {len(STATE_NAMES)} entries {list(STATE_NAMES)}, got {columns}"
        )
    mapping = []
    for target, column in zip(STATE_NAMES, columns, strict=True):
        if column is None:
            mapping.append(-1)
        elif isinstance(column, str):
            if column not in names:
                raise DatasetError(f"state_columns: {column!r} ({target}) not in names {names}")
            mapping.append(names.index(column))
        elif isinstance(column, int) and 0 <= column < width:
            mapping.append(column)
        else:
            raise DatasetError(f"state_columns: {column!r} ({target}) not an index < {width}")
    return np.array(mapping, dtype=np.int64)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: missing (the episode index of a v2 dataset)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: invalid JSON lines ({error})") from None


def _task_of(row: dict) -> str:
    tasks = row.get("tasks") or []
    return str(tasks[0]) if len(tasks) else ""


def list_episodes_v2(root: Path, info: dict, camera: str) -> list[tuple[dict, EpisodeSource]]:
    """(entry, source) per episode of a v2.x dataset: one parquet and one mp4 per episode."""
    chunks_size = int(info.get("chunks_size") or 1000)
    video = info["features"][camera]["dtype"] == "video"
    rows = _read_jsonl(root / EPISODES_JSONL)
    bad = [row for row in rows if not {"episode_index", "length"} <= set(row)]
    if bad:
        raise DatasetError(f"{root / EPISODES_JSONL}: entry without episode_index/length: {bad[0]}")
    listing = []
    for row in sorted(rows, key=lambda r: r["episode_index"]):
        index = int(row["episode_index"])
        fields = {"episode_chunk": index // chunks_size, "episode_index": index}
        source = EpisodeSource(
            index,
            root / info["data_path"].format(**fields),
            root / info["video_path"].format(video_key=camera, **fields) if video else None,
        )
        listing.append(({"length": int(row["length"]), "task": _task_of(row)}, source))
    return listing


def list_episodes_v3(root: Path, info: dict, camera: str) -> list[tuple[dict, EpisodeSource]]:
    """(entry, source) per episode of a v3.0 dataset: episodes are row ranges of shared
    parquet files and time ranges of shared mp4 files, indexed in ``meta/episodes/``."""
    pq = optional_import("pyarrow.parquet")
    files = sorted((root / EPISODES_DIR).rglob("*.parquet"))
    if not files:
        raise DatasetNotFoundError(f"{root / EPISODES_DIR}: no episode index files")
    video = info["features"][camera]["dtype"] == "video"
    prefix = f"videos/{camera}/"
    columns = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index"]
    if video:
        columns += [prefix + name for name in ("chunk_index", "file_index")]
        columns += [prefix + name for name in ("from_timestamp", "to_timestamp")]
    rows = []
    for path in files:
        try:
            rows += pq.read_table(path, columns=columns).to_pylist()
        except Exception as error:  # pyarrow raises several types for bad files and columns
            raise DatasetError(f"{path}: unreadable episode index ({error})") from None
    listing = []
    for row in sorted(rows, key=lambda r: r["episode_index"]):
        data = {"chunk_index": row["data/chunk_index"], "file_index": row["data/file_index"]}
        video_file, start, stop = None, 0.0, math.inf
        if video:
            where = {key: row[prefix + key] for key in ("chunk_index", "file_index")}
            video_file = root / info["video_path"].format(video_key=camera, **where)
            start, stop = float(row[prefix + "from_timestamp"]), float(row[prefix + "to_timestamp"])
        data_file = root / info["data_path"].format(**data)
        source = EpisodeSource(int(row["episode_index"]), data_file, video_file, start, stop)
        listing.append(({"length": int(row["length"]), "task": _task_of(row)}, source))
    return listing


def column_matrix(table: Any, key: str, path: Path) -> np.ndarray:
    """float64 [rows, width] of a list / fixed-size-list (or scalar) column."""
    if key not in table.column_names:
        raise DatasetError(f"{path}: no column {key!r} (columns: {table.column_names})")
    column = table.column(key).combine_chunks()
    if hasattr(column, "flatten") and hasattr(column.type, "value_type"):
        values = column.flatten().to_numpy(zero_copy_only=False)
    else:
        values = column.to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64).reshape(len(table), -1)


class LeRobotReader:
    """Random access to a LeRobot dataset's episodes with ``TrajectoryReader``'s interface:
    ``episodes`` (entries ``{"index", "chunk", "length", "task", "success"}`` in episode order,
    each episode its own chunk), ``load_chunk`` and ``episode``; so ``TrajectoryDataset``
    streams it. One decoded episode is held in memory at a time.

    Frames: the ``camera`` feature, centre-cropped and resized to ``image_size`` (square).
    States: the ``state_key`` vector mapped to [x, y, z, roll, pitch, yaw, gripper] (see
    ``state_mapping``). Actions: derived from consecutive states (``actions_from_states``), or
    the dataset's ``action`` column with ``use_dataset_actions`` (it must already hold 7-D
    deltas in that layout). Task: the episode's first task string. LeRobot records no success
    flag, so ``success`` is False.
    """

    def __init__(
        self,
        root: str | Path,
        camera: str | None = None,
        state_columns: list[StateColumn] | None = None,
        image_size: int | None = None,
        use_dataset_actions: bool = False,
        state_key: str = STATE_KEY,
    ) -> None:
        """Args:
        root: the dataset folder (``meta/info.json``, ``data/``, ``videos/``).
        camera: video/image feature key, or its suffix after ``observation.images.``;
            None = the first ``observation.images.*`` feature.
        state_columns: how the state vector maps to the 7-D state (``state_mapping``);
            None when it already is that state.
        image_size: side of the square frames returned; None keeps the recorded size.
        use_dataset_actions: return the ``action`` column as the stored actions.
        state_key: the feature holding the robot state.
        """
        self.root = Path(root)
        info = read_info(self.root)
        features = info["features"]
        self.camera = pick_camera(features, camera)
        self.state_key = state_key
        self.state_index = state_mapping(features, state_key, state_columns)
        if use_dataset_actions:
            width = int(np.prod(features.get(ACTION_KEY, {}).get("shape") or [0]))
            if width != len(STATE_NAMES):
                raise DatasetError(
                    f"use_dataset_actions needs a 7-D {ACTION_KEY!r} feature (deltas of "
                    f"{list(STATE_NAMES)}), the dataset's has {width} values"
                )
        self.image_size, self.use_dataset_actions = image_size, use_dataset_actions
        self.fps = float(info["fps"])
        self.video = features[self.camera]["dtype"] == "video"
        if self.video and not info.get("video_path"):
            raise DatasetError(f"{self.root / INFO_FILE}: {self.camera} is a video, no video_path")
        version = info["codebase_version"]
        lister = list_episodes_v2 if version in V2_VERSIONS else list_episodes_v3
        listing = lister(self.root, info, self.camera)
        self._sources = [source for _, source in listing]
        self.episodes: list[dict[str, Any]] = [
            {"index": i, "chunk": i, "success": False, **entry, "lerobot_episode": s.episode_index}
            for i, (entry, s) in enumerate(listing)
        ]
        self._check_files()
        self.meta = {
            "format": "lerobot",
            "codebase_version": version,
            "fps": self.fps,
            "control_dt": 1.0 / self.fps,
            "image_size": [image_size, image_size] if image_size else None,
            "camera": self.camera,
            "tasks": list(dict.fromkeys(entry["task"] for entry in self.episodes)),
            "num_episodes": len(self.episodes),
            "num_frames": sum(entry["length"] for entry in self.episodes),
            "episodes": self.episodes,
        }
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return f"LeRobotReader({str(self.root)!r}, camera={self.camera!r})"

    def _check_files(self) -> None:
        """Every listed parquet and video file exists (checked once, before any training)."""
        seen: set[Path] = set()
        for source in self._sources:
            for path, kind in ((source.data_file, "parquet"), (source.video_file, "video")):
                if path is None or path in seen:
                    continue
                if not path.is_file():
                    raise DatasetNotFoundError(
                        f"{path}: {kind} file of episode {source.episode_index} is missing"
                    )
                seen.add(path)

    def _rows(self, source: EpisodeSource) -> Any:
        """The episode's parquet rows (the columns this reader uses), in frame order."""
        pq = optional_import("pyarrow.parquet")
        path = source.data_file
        wanted = [self.state_key, "episode_index"]
        wanted += [ACTION_KEY] if self.use_dataset_actions else []
        wanted += [] if self.video else [self.camera]
        try:
            names = pq.read_schema(path).names
            missing = [name for name in wanted if name not in names]
            if missing:
                raise DatasetError(f"{path}: no column(s) {missing} (columns: {names})")
            columns = wanted + (["frame_index"] if "frame_index" in names else [])
            table = pq.read_table(
                path, columns=columns, filters=[("episode_index", "=", source.episode_index)]
            )
        except DatasetError:
            raise
        except Exception as error:  # pyarrow raises several types for a corrupt file
            raise DatasetError(f"{path}: unreadable parquet ({error})") from None
        return table.sort_by("frame_index") if "frame_index" in columns else table

    def _states(self, table: Any, path: Path) -> np.ndarray:
        vectors = column_matrix(table, self.state_key, path)
        if self.state_index.max() >= vectors.shape[1]:
            raise DatasetError(f"{path}: {self.state_key!r} has {vectors.shape[1]} values")
        states = np.where(self.state_index >= 0, vectors[:, self.state_index.clip(0)], 0.0)
        if not np.all(np.isfinite(states)):
            raise DatasetError(f"{path}: {self.state_key!r} holds NaN or infinite values")
        return states.astype(np.float32)

    def load_chunk(self, chunk_id: int) -> dict[str, np.ndarray]:
        """Episode ``chunk_id`` decoded into a chunk's arrays (see ``TrajectoryReader``)."""
        if self._cached is not None and self._cached[0] == chunk_id:
            return self._cached[1]
        entry, source = self.episodes[chunk_id], self._sources[chunk_id]
        table, length = self._rows(source), entry["length"]
        if len(table) != length:
            raise DatasetError(
                f"{source.data_file}: episode {source.episode_index} has {len(table)} rows, "
                f"the episode index says {length}"
            )
        states = self._states(table, source.data_file)
        if self.video:
            frames = decode_video(
                source.video_file,
                self.fps,
                self.image_size,
                source.from_timestamp,
                source.to_timestamp,
            )
        else:
            frames = decode_images(table.column(self.camera).to_pylist(), self.image_size)
        if len(frames) != length:
            raise DatasetError(
                f"episode {source.episode_index}: frame count mismatch, {len(frames)} frames of "
                f"{self.camera} in {source.video_file or source.data_file} but {length} rows "
                f"in {source.data_file}"
            )
        if self.use_dataset_actions:
            actions = column_matrix(table, ACTION_KEY, source.data_file).astype(np.float32)
            actions[-1] = 0.0
        else:
            actions = actions_from_states(torch.from_numpy(states)).numpy()
        arrays = {
            "frames": frames,
            "states": states,
            "actions": actions,
            "lengths": np.array([length], dtype=np.int64),
            "episode_index": np.array([chunk_id], dtype=np.int64),
            "tasks": np.array([entry["task"]], dtype=np.str_),
            "success": np.array([False]),
        }
        self._cached = (chunk_id, arrays)
        return arrays

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (0-based, in LeRobot episode order)."""
        if not 0 <= index < len(self.episodes):
            raise IndexError(f"episode {index} out of range (dataset has {len(self.episodes)})")
        arrays, task = self.load_chunk(index), self.episodes[index]["task"]
        return Episode(arrays["frames"], arrays["states"], arrays["actions"], task, False)
