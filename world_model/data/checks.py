"""Checks of what a trajectory reader gets from disk: the ``meta.json`` index (types, ranges and
cross-references) and a chunk's arrays (dtypes and shapes read from the ``.npy`` headers before
any data is, then the values against the index). Each failure is a DatasetError naming the
file and the field."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from world_model.data.errors import DatasetError

META_KEYS = ("image_size", "control_dt", "num_episodes", "num_frames", "chunks", "episodes")
MAX_IMAGE_SIDE = 65536
# dtype rule per chunk array: an exact dtype, or a numpy kind ("iu" integer, "U" text)
# Optional per chunk in meta.json: the chunk holds DAgger labels, the expert's action at every
# frame ("expert_actions") and the goal image each episode was driven toward ("goal_frames").
LABELLED_KEY = "expert_actions"
DTYPE_RULES: dict[str, Any] = {
    "frames": np.dtype(np.uint8),
    "states": np.dtype(np.float32),
    "actions": np.dtype(np.float32),
    "expert_actions": np.dtype(np.float32),
    "goal_frames": np.dtype(np.uint8),
    "lengths": "iu",
    "episode_index": "iu",
    "tasks": "U",
    "success": np.dtype(np.bool_),
}


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_meta(meta: Any, path: Path) -> None:
    """Raise DatasetError naming the first malformed field of a ``meta.json`` index."""
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, got {type(meta).__name__}")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise DatasetError(f"{path}: missing key(s) {missing}")
    dt = meta["control_dt"]
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise DatasetError(f"{path}: control_dt must be a positive number of seconds, got {dt!r}")
    _check_chunks(meta["chunks"], path)
    _check_episodes(meta["episodes"], len(meta["chunks"]), path)
    episodes = meta["episodes"]
    per_chunk = [0] * len(meta["chunks"])
    for entry in episodes:
        per_chunk[entry["chunk"]] += 1
    for chunk_id, (chunk, count) in enumerate(zip(meta["chunks"], per_chunk, strict=True)):
        if chunk["episodes"] != count:
            raise DatasetError(
                f"{path}: chunks[{chunk_id}] says {chunk['episodes']} episodes, the episode "
                f"list has {count}"
            )
    frames = sum(entry["length"] for entry in episodes)
    if meta["num_episodes"] != len(episodes) or meta["num_frames"] != frames:
        raise DatasetError(
            f"{path}: num_episodes/num_frames {meta['num_episodes']!r}/{meta['num_frames']!r} "
            f"do not match the episode list ({len(episodes)} episodes, {frames} frames)"
        )
    _check_image_size(meta["image_size"], bool(episodes), path)


def _check_chunks(chunks: Any, path: Path) -> None:
    if not isinstance(chunks, list):
        raise DatasetError(f"{path}: chunks must be a list, got {type(chunks).__name__}")
    for chunk_id, chunk in enumerate(chunks):
        where = f"{path}: chunks[{chunk_id}]"
        if not isinstance(chunk, dict) or not {"file", "bytes", "episodes"} <= set(chunk):
            raise DatasetError(f"{where} must be {{'file', 'bytes', 'episodes'}}, got {chunk!r}")
        name = chunk["file"]
        pure = PurePosixPath(name) if isinstance(name, str) else None
        if pure is None or pure.is_absolute() or ".." in pure.parts or "\\" in name or not name:
            raise DatasetError(f"{where}.file {name!r} must be a path inside the dataset folder")
        if not _is_int(chunk["bytes"]) or not _is_int(chunk["episodes"], 1):
            raise DatasetError(f"{where}: bytes and episodes must be integers (episodes >= 1)")
        if not isinstance(chunk.get(LABELLED_KEY, False), bool):
            raise DatasetError(f"{where}.{LABELLED_KEY} must be true or false")


def _check_episodes(episodes: Any, num_chunks: int, path: Path) -> None:
    if not isinstance(episodes, list):
        raise DatasetError(f"{path}: episodes must be a list, got {type(episodes).__name__}")
    keys = {"index", "chunk", "length", "task", "success"}
    previous_chunk = 0
    for position, entry in enumerate(episodes):
        where = f"{path}: episodes[{position}]"
        if not isinstance(entry, dict) or not keys <= set(entry):
            raise DatasetError(f"{where} must hold {sorted(keys)}, got {entry!r}")
        if entry["index"] != position or not _is_int(entry["index"]):
            raise DatasetError(f"{where}.index is {entry['index']!r}, expected {position}")
        chunk = entry["chunk"]
        if not _is_int(chunk) or not previous_chunk <= chunk < num_chunks:
            raise DatasetError(
                f"{where}.chunk {chunk!r} is not a chunk id in order (0 .. {num_chunks - 1})"
            )
        previous_chunk = chunk
        if not _is_int(entry["length"], 1):
            raise DatasetError(f"{where}.length must be an integer >= 1, got {entry['length']!r}")
        if not isinstance(entry["task"], str) or not isinstance(entry["success"], bool):
            raise DatasetError(f"{where}: task must be a string and success a boolean")


def _check_image_size(size: Any, required: bool, path: Path) -> None:
    if size is None and not required:
        return
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(_is_int(side, 1) and side <= MAX_IMAGE_SIDE for side in size)
    ):
        raise DatasetError(f"{path}: image_size must be [H, W] in pixels, got {size!r}")


def chunk_layout(
    entries: list[dict], image_size: list[int], labelled: bool = False
) -> dict[str, tuple[int, ...]]:
    """The array shapes a chunk holding ``entries`` (its episodes in ``meta.json``) must have;
    ``labelled``: the chunk also holds ``expert_actions`` and ``goal_frames`` (its index
    entry says so)."""
    total, count = sum(entry["length"] for entry in entries), len(entries)
    height, width = image_size
    layout = {
        "frames": (total, height, width, 3),
        "states": (total, 7),
        "actions": (total, 7),
        "lengths": (count,),
        "episode_index": (count,),
        "tasks": (count,),
        "success": (count,),
    }
    if labelled:
        layout["expert_actions"] = (total, 7)
        layout["goal_frames"] = (count, height, width, 3)
    return layout


def read_chunk(path: Path, layout: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Read a chunk's arrays, each only after its ``.npy`` header shows the dtype and shape in
    ``layout`` (so a corrupt or hostile file never makes us allocate what it claims)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {key: _read_member(archive, key, shape, path) for key, shape in layout.items()}
    except DatasetError:
        raise
    except Exception as error:  # zipfile, zlib and numpy raise many types on corrupt bytes
        raise DatasetError(
            f"{path}: unreadable chunk ({type(error).__name__}: {str(error)[:200]})"
        ) from None


def _read_member(archive: zipfile.ZipFile, key: str, shape: tuple, path: Path) -> np.ndarray:
    name = f"{key}.npy"
    if name not in archive.namelist():
        raise DatasetError(f"{path}: no array {key!r} (has {sorted(archive.namelist())[:8]})")
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            found, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            found, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise DatasetError(f"{path}: {key} is in .npy format {version}, expected 1.0 or 2.0")
    rule = DTYPE_RULES[key]
    if (dtype != rule) if isinstance(rule, np.dtype) else (dtype.kind not in rule):
        expected = rule if isinstance(rule, np.dtype) else {"iu": "integer", "U": "str"}[rule]
        raise DatasetError(f"{path}: {key} has dtype {dtype}, expected {expected}")
    if tuple(found) != shape:
        raise DatasetError(f"{path}: {key} has shape {tuple(found)}, expected {shape}")
    needed = math.prod(shape) * dtype.itemsize
    if archive.getinfo(name).file_size < needed:  # before allocating what the header claims
        raise DatasetError(
            f"{path}: {key} holds {archive.getinfo(name).file_size} bytes, its shape needs "
            f"{needed} (truncated array)"
        )
    with archive.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def check_chunk_values(path: Path, entries: list[dict], arrays: dict[str, np.ndarray]) -> None:
    """The per-episode arrays agree with ``meta.json`` and states/actions are finite."""
    recorded = {
        "lengths": [entry["length"] for entry in entries],
        "episode_index": [entry["index"] for entry in entries],
        "tasks": [entry["task"] for entry in entries],
        "success": [entry["success"] for entry in entries],
    }
    for key, expected in recorded.items():
        found = arrays[key].tolist()
        if found != expected:
            raise DatasetError(f"{path}: {key} {found[:8]} differ from meta.json's {expected[:8]}")
    for key in ("states", "actions", "expert_actions"):
        if key in arrays and not np.all(np.isfinite(arrays[key])):
            row = int(np.flatnonzero(~np.isfinite(arrays[key]).all(axis=1))[0])
            raise DatasetError(f"{path}: {key} hold NaN or infinite values (row {row})")
