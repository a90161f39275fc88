"""Trajectory datasets on disk (format in ``docs/data_format.md``): ``TrajectoryWriter`` appends
episodes in chunked ``.npz`` files, written atomically; ``TrajectoryReader`` reads them and
``TrajectoryDataset`` streams batches of clips of T frames at a frame stride. Each chunk's
sha256 is recorded in the index and checked when the chunk is loaded."""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robots.franka import STATE_NAMES, pose_delta
from world_model.data.checks import (
    LABELLED_KEY,
    check_chunk_values,
    check_meta,
    chunk_layout,
    read_chunk,
)
from world_model.data.errors import DatasetError, DatasetNotFoundError  # importable from here
from world_model.files import atomic_write

FORMAT = "jepa-mpc/trajectories"
VERSION = 1
META_FILE = "meta.json"
CHUNK_DIR = "chunks"
ACTION_NAMES = tuple(f"d{name}" for name in STATE_NAMES)
CHUNK_KEYS = ("frames", "states", "actions", "lengths", "episode_index", "tasks", "success")
HASH_KEY = "sha256"  # optional per chunk in meta.json: datasets written before it lack it
HASH_PATTERN = re.compile(r"[0-9a-f]{64}")


@dataclass
class Episode:
    """One trajectory. frames: uint8 [T, H, W, 3]; states, actions: float32 [T, 7] (action t
    takes state t to state t+1; the last action is zero); task: name; success: flag;
    expert_actions: float32 [T, 7] or None, what the scripted expert would have done at each
    frame while another policy acted (DAgger labels, ``jepa-mpc collect --planner``);
    goal_frame: uint8 [H, W, 3] or None, the goal image that policy was given."""

    frames: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    task: str
    success: bool
    expert_actions: np.ndarray | None = None
    goal_frame: np.ndarray | None = None


def _write_file(path: Path, write) -> str:
    """Call ``write(handle)`` on a binary temp file beside ``path``, fsync it and rename it
    onto ``path`` (``world_model.files.atomic_write``).

    Returns:
        the hex sha256 of the file as written (read back from the temp file before the rename,
        so the hash is of exactly the bytes that become ``path``).
    """
    digest = ""

    def write_and_hash(temp: Path) -> None:
        nonlocal digest
        with open(temp, "w+b") as handle:
            write(handle)
            handle.flush()
            handle.seek(0)
            digest = hashlib.file_digest(handle, "sha256").hexdigest()

    atomic_write(path, write_and_hash, temp_suffix=".tmp", durable=True)
    return digest


class _ChunkBytes(io.BytesIO):
    """A chunk file's bytes in memory (read once: hashed, then parsed from here) whose ``str``
    is the file's path, so ``checks.read_chunk``'s errors still name the file."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(data)
        self.path = path
        self.name = str(path)

    def __str__(self) -> str:
        return str(self.path)


def _check_hashes(chunks: list[dict[str, Any]], path: Path) -> None:
    """Each chunk's optional ``sha256`` is 64 lowercase hex digits."""
    for chunk_id, chunk in enumerate(chunks):
        value = chunk.get(HASH_KEY)
        if value is not None and not (isinstance(value, str) and HASH_PATTERN.fullmatch(value)):
            raise DatasetError(
                f"{path}: chunks[{chunk_id}].{HASH_KEY} must be 64 lowercase hex digits, "
                f"got {value!r:.80}"
            )


def actions_from_states(states: torch.Tensor) -> torch.Tensor:
    """States [..., T, 7] -> actions [..., T, 7]: action t = ``pose_delta(state t, state t+1)``
    (computed in float64), the last action zero."""
    actions = torch.zeros_like(states)
    if states.shape[-2] > 1:
        wide = states.double()
        actions[..., :-1, :] = pose_delta(wide[..., :-1, :], wide[..., 1:, :]).to(states.dtype)
    return actions


def read_meta(root: str | Path) -> dict[str, Any]:
    """Read ``root/meta.json`` and check every field (``checks.check_meta``)."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise DatasetNotFoundError(f"no trajectory dataset at {root} (missing {META_FILE})")
    try:
        with open(path, encoding="utf-8") as handle:
            meta = json.load(handle)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(f"{path}: invalid JSON ({str(error)[:200]})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DatasetError(
            f"{path}: not a {FORMAT} v{VERSION} dataset (format={meta.get('format')!r}, "
            f"version={meta.get('version')!r})"
        )
    check_meta(meta, path)
    _check_hashes(meta["chunks"], path)
    return meta


class TrajectoryWriter:
    """Append episodes to a dataset folder; every ``episodes_per_chunk`` episodes become one
    chunk file. A chunk is written to a temp file and renamed, and ``meta.json`` (the index)
    is replaced only after that, so a crash never leaves the index pointing at a partial file.

    Use as a context manager (or call ``close()``) so that the last partial chunk is written.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: tuple[int, int] | None = None,
        control_dt: float = 0.1,
        episodes_per_chunk: int = 16,
        compress: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Args:
        root: dataset folder; an existing dataset is appended to (its image size and
            control_dt must match).
        image_size: (H, W) of every frame; None = taken from the first episode.
        control_dt: seconds between consecutive frames (fps = 1 / control_dt).
        episodes_per_chunk: episodes buffered before a chunk file is written.
        compress: zip-deflate the chunk files (smaller, slower to read).
        info: free-form JSON-able metadata stored in meta.json (simulator, camera, seed...).
        """
        if episodes_per_chunk < 1:
            raise ValueError(f"episodes_per_chunk must be >= 1, got {episodes_per_chunk}")
        self.root = Path(root)
        self.episodes_per_chunk = episodes_per_chunk
        self.compress = compress
        self._pending: list[Episode] = []
        if (self.root / META_FILE).exists():
            self.meta = read_meta(self.root)
            if image_size is not None and tuple(self.meta["image_size"]) != tuple(image_size):
                raise DatasetError(
                    f"{self.root}: image_size {tuple(image_size)} differs from the dataset's "
                    f"{tuple(self.meta['image_size'])}"
                )
            if abs(self.meta["control_dt"] - control_dt) > 1e-9:
                raise DatasetError(
                    f"{self.root}: control_dt {control_dt} differs from {self.meta['control_dt']}"
                )
        else:
            self.meta = {
                "format": FORMAT,
                "version": VERSION,
                "image_size": list(image_size) if image_size else None,
                "control_dt": float(control_dt),
                "fps": 1.0 / float(control_dt),
                "state_layout": list(STATE_NAMES),
                "action_layout": list(ACTION_NAMES),
                "tasks": [],
                "num_episodes": 0,
                "num_frames": 0,
                "chunks": [],
                "episodes": [],
                "info": info or {},
            }
        (self.root / CHUNK_DIR).mkdir(parents=True, exist_ok=True)

    def _check_frames(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise DatasetError(
                f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
            )
        length = len(frames)
        if length < 1:
            raise DatasetError("an episode needs at least one frame")
        size = self.meta["image_size"]
        if size is not None and list(frames.shape[1:3]) != list(size):
            raise DatasetError(f"frames are {frames.shape[1:3]}, the dataset holds {size}")

    @staticmethod
    def _check_array(name: str, array: np.ndarray, length: int) -> None:
        if array.shape != (length, 7):
            raise DatasetError(f"{name} must be [{length}, 7], got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise DatasetError(f"{name} contain NaN or infinite values")

    def add_episode(
        self,
        frames: np.ndarray,
        states: np.ndarray,
        actions: np.ndarray | None = None,
        task: str = "",
        success: bool = False,
        expert_actions: np.ndarray | None = None,
        goal_frame: np.ndarray | None = None,
    ) -> int:
        """Queue one episode (written when the chunk is full or on ``close``).

        Args:
            frames: uint8 RGB [T, H, W, 3]. states: [T, 7] end-effector states.
            actions: [T, 7] with action t taking state t to t+1 and a zero last row;
                None = derived from the states (``actions_from_states``).
            task: task name. success: whether the episode reached its goal.
            expert_actions: [T, 7] the expert's labels of the frames and goal_frame: uint8
                [H, W, 3] the goal image the acting policy was given (DAgger data; both or
                neither). A chunk holds labelled episodes only, or unlabelled ones only.

        Returns:
            the episode's index in the dataset.
        """
        try:
            frames, states = np.asarray(frames), np.asarray(states, dtype=np.float32)
            actions = None if actions is None else np.asarray(actions, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise DatasetError(f"episode arrays must be numeric arrays: {error}") from None
        self._check_frames(frames)
        self._check_array("states", states, len(frames))
        if actions is None:
            actions = actions_from_states(torch.from_numpy(states)).numpy()
        self._check_array("actions", actions, len(frames))
        if (expert_actions is None) != (goal_frame is None):
            raise DatasetError("expert_actions and goal_frame come together (DAgger labels)")
        if expert_actions is not None:
            expert_actions = np.asarray(expert_actions, dtype=np.float32)
            self._check_array("expert_actions", expert_actions, len(frames))
            goal_frame = np.asarray(goal_frame)
            if goal_frame.shape != frames.shape[1:] or goal_frame.dtype != np.uint8:
                raise DatasetError(
                    f"goal_frame is {goal_frame.dtype} {goal_frame.shape}, the frames uint8 "
                    f"{frames.shape[1:]}"
                )
        if self._pending and (expert_actions is None) != (self._pending[0].expert_actions is None):
            self.flush()  # a chunk holds labelled episodes only, or unlabelled ones only
        episode = Episode(
            frames, states, actions, str(task), bool(success), expert_actions, goal_frame
        )
        if self.meta["image_size"] is None:
            self.meta["image_size"] = list(episode.frames.shape[1:3])
        self._pending.append(episode)
        index = self.meta["num_episodes"] + len(self._pending) - 1
        if len(self._pending) >= self.episodes_per_chunk:
            self.flush()
        return index

    def flush(self) -> None:
        """Write the queued episodes as one chunk, then the updated index."""
        if not self._pending:
            return
        episodes, self._pending = self._pending, []
        chunk_id = len(self.meta["chunks"])
        name = f"{CHUNK_DIR}/chunk-{chunk_id:06d}.npz"
        first = self.meta["num_episodes"]
        arrays = {
            "frames": np.concatenate([e.frames for e in episodes]),
            "states": np.concatenate([e.states for e in episodes]),
            "actions": np.concatenate([e.actions for e in episodes]),
            "lengths": np.array([len(e.frames) for e in episodes], dtype=np.int64),
            "episode_index": np.arange(first, first + len(episodes), dtype=np.int64),
            "tasks": np.array([e.task for e in episodes], dtype=np.str_),
            "success": np.array([e.success for e in episodes], dtype=np.bool_),
        }
        labelled = episodes[0].expert_actions is not None
        if labelled:
            arrays[LABELLED_KEY] = np.concatenate([e.expert_actions for e in episodes])
            arrays["goal_frames"] = np.stack([e.goal_frame for e in episodes])
        save = np.savez_compressed if self.compress else np.savez
        digest = _write_file(self.root / name, lambda handle: save(handle, **arrays))
        meta = json.loads(json.dumps(self.meta))  # the new index is built on a copy
        entry = {
            "file": name,
            "bytes": (self.root / name).stat().st_size,
            "episodes": len(episodes),
            HASH_KEY: digest,
        }
        if labelled:
            entry[LABELLED_KEY] = True
        meta["chunks"].append(entry)
        for offset, episode in enumerate(episodes):
            meta["episodes"].append(
                {
                    "index": first + offset,
                    "chunk": chunk_id,
                    "length": len(episode.frames),
                    "task": episode.task,
                    "success": episode.success,
                }
            )
            if episode.task not in meta["tasks"]:
                meta["tasks"].append(episode.task)
        meta["num_episodes"] = first + len(episodes)
        meta["num_frames"] += int(arrays["lengths"].sum())
        text = json.dumps(meta, indent=1).encode("utf-8")
        _write_file(self.root / META_FILE, lambda handle: handle.write(text))
        self.meta = meta

    def close(self) -> None:
        """Write any queued episodes."""
        self.flush()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _verify_hash(path: Path, data: bytes, expected: str | None) -> None:
    """Raise DatasetError naming ``path`` when ``data``'s sha256 is not ``expected`` (None: the
    index predates chunk hashes, nothing to check)."""
    if expected is None:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{path}: corrupt chunk (sha256 mismatch: expected {expected[:16]}... from "
            f"{META_FILE}, actual {actual[:16]}...; the file's bytes changed on disk)"
        )


class TrajectoryReader:
    """Random access to a dataset's episodes, one chunk file held in memory at a time. The
    index is checked when the reader opens, each chunk when it is loaded: its size and sha256
    against the index, then its arrays (``checks.py``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.episodes: list[dict[str, Any]] = self.meta["episodes"]
        self._chunk_entries: list[list[dict[str, Any]]] = [[] for _ in self.meta["chunks"]]
        for entry in self.episodes:
            self._chunk_entries[entry["chunk"]].append(entry)
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def load_chunk(self, chunk_id: int) -> dict[str, np.ndarray]:
        """All arrays of chunk ``chunk_id``, checked against the index: byte size, sha256 (when
        the index has one; datasets written before hashes were recorded are not verified), then
        dtypes and shapes before the arrays are parsed, then lengths, episode ids, tasks and
        finite states/actions. The file is read once; its bytes are hashed and parsed."""
        if self._cached is not None and self._cached[0] == chunk_id:
            return self._cached[1]
        if not 0 <= chunk_id < len(self.meta["chunks"]):
            raise IndexError(f"chunk {chunk_id} out of range ({len(self.meta['chunks'])} chunks)")
        entry = self.meta["chunks"][chunk_id]
        path = self.root / entry["file"]
        if not path.is_file():
            raise DatasetNotFoundError(f"{path}: chunk file listed in {META_FILE} is missing")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(
                f"{path}: {size} bytes on disk but {entry['bytes']} in {META_FILE} "
                f"(truncated or overwritten chunk)"
            )
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DatasetError(f"{path}: unreadable chunk ({error})") from None
        if len(data) != entry["bytes"]:
            raise DatasetError(
                f"{path}: {len(data)} bytes read but {entry['bytes']} in {META_FILE} "
                f"(chunk changed while being read)"
            )
        _verify_hash(path, data, entry.get(HASH_KEY))
        entries = self._chunk_entries[chunk_id]
        layout = chunk_layout(entries, self.meta["image_size"], entry.get(LABELLED_KEY, False))
        arrays = read_chunk(_ChunkBytes(data, path), layout)
        check_chunk_values(path, entries, arrays)
        self._cached = (chunk_id, arrays)
        return arrays

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (0-based, dataset order)."""
        if not 0 <= index < len(self.episodes):
            raise IndexError(f"episode {index} out of range (dataset has {len(self.episodes)})")
        entry = self.episodes[index]
        arrays = self.load_chunk(entry["chunk"])
        position = int(np.flatnonzero(arrays["episode_index"] == index)[0])
        start = int(arrays["lengths"][:position].sum())
        stop = start + int(arrays["lengths"][position])
        if stop - start != entry["length"]:
            raise DatasetError(f"episode {index}: length {stop - start} != {entry['length']}")
        return Episode(
            arrays["frames"][start:stop],
            arrays["states"][start:stop],
            arrays["actions"][start:stop],
            str(arrays["tasks"][position]),
            bool(arrays["success"][position]),
            arrays[LABELLED_KEY][start:stop] if LABELLED_KEY in arrays else None,
            arrays["goal_frames"][position] if LABELLED_KEY in arrays else None,
        )
