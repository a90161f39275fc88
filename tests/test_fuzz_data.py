"""Fuzzing of trajectory-data loading (hypothesis, bounded): a tiny valid dataset written by
``TrajectoryWriter`` is corrupted (truncated, random or flipped chunk bytes, deleted files,
arrays of the wrong dtype or shape or with NaN, a broken ``meta.json``) and read back with
``TrajectoryReader`` and ``TrajectoryDataset``: each must raise ``DatasetError`` (or
``DatasetNotFoundError`` for a missing file) naming the file, nothing else. A writer interrupted
by an exception or by SIGKILL leaves no half-written episode visible."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from world_model.data.format import (
    DatasetError,
    DatasetNotFoundError,
    TrajectoryReader,
    TrajectoryWriter,
)
from world_model.data.stream import TrajectoryDataset

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SIZE = 8
LENGTHS = (5, 3, 6)  # episodes 0, 1 in chunk 0; episode 2 in chunk 1
CHUNKS = ("chunks/chunk-000000.npz", "chunks/chunk-000001.npz")
ARRAY_KEYS = ("frames", "states", "actions", "lengths", "episode_index", "tasks", "success")
BAD = (DatasetError, DatasetNotFoundError)


def make_episode(seed: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Random frames [T, 8, 8, 3] and a smooth ee trajectory [T, 7]."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8)
    states = np.zeros((length, 7), np.float32)
    states[:, :3] = 0.5 + np.cumsum(rng.normal(scale=0.02, size=(length, 3)), axis=0)
    states[:, 3:6] = [np.pi - 0.1, 0.05, 0.2]
    states[:, 6] = rng.uniform(0, 1, length)
    return frames, states


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The valid dataset every example starts from (copied, never changed)."""
    root = tmp_path_factory.mktemp("template") / "data"
    with TrajectoryWriter(root, control_dt=0.1, episodes_per_chunk=2) as writer:
        for number, length in enumerate(LENGTHS):
            writer.add_episode(*make_episode(number, length), task=f"t{number % 2}")
    return root


@contextmanager
def copy_of(template: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(shutil.copytree(template, Path(tmp) / "data"))


def read_everything(root: Path) -> list:
    """What training does: open, read every episode, stream every clip."""
    reader = TrajectoryReader(root)
    episodes = [reader.episode(index) for index in range(len(reader))]
    clips = list(TrajectoryDataset(root, clip_len=2, shuffle=False))
    return [episodes, clips]


def refused(root: Path, *words: str) -> Exception:
    with pytest.raises(BAD) as info:
        read_everything(root)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    return info.value


def load_meta(root: Path) -> dict[str, Any]:
    return json.loads((root / "meta.json").read_text())


def save_meta(root: Path, meta: Any) -> None:
    (root / "meta.json").write_text(json.dumps(meta))


def rewrite_chunk(root: Path, chunk: int, arrays: dict[str, Any], fix_size: bool = True) -> None:
    """Replace a chunk file by ``arrays`` (and record its new size and sha256, so the byte-size
    and hash checks do not stop the reader before the arrays are looked at)."""
    path = root / CHUNKS[chunk]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    if fix_size:
        set_chunk_bytes(root, chunk)


def set_chunk_bytes(root: Path, chunk: int) -> None:
    """Record the chunk file's current size and sha256 in meta.json (as if written so)."""
    meta, path = load_meta(root), root / CHUNKS[chunk]
    meta["chunks"][chunk]["bytes"] = path.stat().st_size
    meta["chunks"][chunk]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    save_meta(root, meta)


def chunk_arrays(root: Path, chunk: int) -> dict[str, np.ndarray]:
    with np.load(root / CHUNKS[chunk]) as data:
        return {key: data[key] for key in data.files}


def test_template_reads_back(template: Path) -> None:
    episodes, clips = read_everything(template)
    assert [len(e.frames) for e in episodes] == list(LENGTHS)
    assert len(clips) == sum(length - 1 for length in LENGTHS)


# --- chunk bytes ---------------------------------------------------------------------------


@FUZZ
@given(chunk=st.integers(0, 1), fraction=st.floats(0, 0.999), fix_size=st.booleans())
def test_truncated_chunk(template: Path, chunk: int, fraction: float, fix_size: bool) -> None:
    with copy_of(template) as root:
        path = root / CHUNKS[chunk]
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
        if fix_size:
            set_chunk_bytes(root, chunk)
        refused(root, CHUNKS[chunk], "truncated" if not fix_size else "")


@FUZZ
@given(chunk=st.integers(0, 1), data=st.binary(max_size=2048))
def test_random_bytes_as_chunk(template: Path, chunk: int, data: bytes) -> None:
    with copy_of(template) as root:
        (root / CHUNKS[chunk]).write_bytes(data)
        set_chunk_bytes(root, chunk)
        refused(root, CHUNKS[chunk])


@FUZZ
@given(
    chunk=st.integers(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_flipped_chunk_bytes_are_refused(
    template: Path, chunk: int, flips: list[tuple[float, int]]
) -> None:
    """Same size, flipped bytes: the chunk's sha256 in meta.json no longer matches, a
    DatasetError naming the chunk as corrupt (never another exception, never silent)."""
    with copy_of(template) as root:
        path = root / CHUNKS[chunk]
        data = bytearray(path.read_bytes())
        for where, mask in flips:
            data[int(where * len(data))] ^= mask
        if data == path.read_bytes():
            return  # the flips cancelled out
        path.write_bytes(bytes(data))
        refused(root, CHUNKS[chunk], "corrupt chunk")


@FUZZ
@given(name=st.sampled_from(["meta.json", *CHUNKS]))
def test_deleted_file_is_named(template: Path, name: str) -> None:
    with copy_of(template) as root:
        (root / name).unlink()
        error = refused(root, name)
        assert isinstance(error, DatasetNotFoundError)


# --- arrays of the wrong kind --------------------------------------------------------------

ODD_DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.str_, object]


@FUZZ
@given(chunk=st.integers(0, 1), key=st.sampled_from(ARRAY_KEYS), dtype=st.sampled_from(ODD_DTYPES))
def test_array_of_wrong_dtype_is_named(template: Path, chunk: int, key: str, dtype: type) -> None:
    with copy_of(template) as root:
        arrays = chunk_arrays(root, chunk)
        try:
            changed = arrays[key].astype(dtype)
        except ValueError:
            return  # e.g. task names are not numbers
        allowed = {"lengths": "iu", "episode_index": "iu", "tasks": "U"}.get(key, "")
        if changed.dtype == arrays[key].dtype or changed.dtype.kind in allowed:
            return  # not a wrong dtype
        rewrite_chunk(root, chunk, {**arrays, key: changed})
        refused(root, CHUNKS[chunk], key)


def reshape(array: np.ndarray, how: str) -> np.ndarray:
    if how == "drop_row":
        return array[:-1]
    if how == "extra_row":
        return np.concatenate([array, array[:1]])
    if how == "extra_dim":
        return array[..., None]
    return array.reshape(-1)  # flatten


@FUZZ
@given(
    chunk=st.integers(0, 1),
    key=st.sampled_from(ARRAY_KEYS),
    how=st.sampled_from(["drop_row", "extra_row", "extra_dim", "flatten"]),
)
def test_array_of_wrong_shape_is_named(template: Path, chunk: int, key: str, how: str) -> None:
    with copy_of(template) as root:
        arrays = chunk_arrays(root, chunk)
        arrays[key] = reshape(arrays[key], how)
        if arrays[key].shape == chunk_arrays(root, chunk)[key].shape:
            return  # flattening a 1-D array changes nothing
        rewrite_chunk(root, chunk, arrays)
        refused(root, CHUNKS[chunk], key)


@FUZZ
@given(chunk=st.integers(0, 1), key=st.sampled_from(ARRAY_KEYS))
def test_missing_array_is_named(template: Path, chunk: int, key: str) -> None:
    with copy_of(template) as root:
        arrays = chunk_arrays(root, chunk)
        del arrays[key]
        rewrite_chunk(root, chunk, arrays)
        refused(root, CHUNKS[chunk], key)


@FUZZ
@given(
    chunk=st.integers(0, 1),
    key=st.sampled_from(["states", "actions"]),
    where=st.floats(0, 0.999),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_nan_states_or_actions_are_refused(
    template: Path, chunk: int, key: str, where: float, value: float
) -> None:
    with copy_of(template) as root:
        arrays = chunk_arrays(root, chunk)
        flat = arrays[key].reshape(-1)
        flat[int(where * flat.size)] = value
        rewrite_chunk(root, chunk, arrays)
        refused(root, CHUNKS[chunk], key, "NaN")


@FUZZ
@given(
    key=st.sampled_from(["lengths", "episode_index", "tasks", "success"]),
    value=st.one_of(st.integers(-3, 9), st.booleans(), st.text(max_size=3)),
)
def test_per_episode_arrays_must_match_the_index(template: Path, key: str, value: Any) -> None:
    with copy_of(template) as root:
        arrays = chunk_arrays(root, 0)
        changed = arrays[key].copy()
        try:
            changed[0] = value
        except (ValueError, TypeError):
            return  # not representable in this array's dtype
        if changed.tolist() == arrays[key].tolist():
            return
        rewrite_chunk(root, 0, {**arrays, key: changed})
        refused(root, CHUNKS[0], key)


# --- meta.json -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
META_PATHS = [
    ("image_size",),
    ("control_dt",),
    ("num_episodes",),
    ("num_frames",),
    ("chunks",),
    ("episodes",),
    ("chunks", 0),
    ("chunks", 1, "file"),
    ("chunks", 0, "bytes"),
    ("chunks", 1, "episodes"),
    ("episodes", 0),
    ("episodes", 1, "index"),
    ("episodes", 2, "chunk"),
    ("episodes", 0, "length"),
    ("episodes", 1, "task"),
    ("episodes", 2, "success"),
    ("image_size", 0),
    ("format",),
    ("version",),
]


def set_path(data: Any, path: tuple, value: Any, delete: bool) -> None:
    for key in path[:-1]:
        data = data[key]
    if delete:
        del data[path[-1]]
    else:
        data[path[-1]] = value


@FUZZ
@given(path=st.sampled_from(META_PATHS), value=JSON_VALUES, delete=st.booleans())
def test_meta_field_changed_reads_the_same_or_is_refused(
    template: Path, path: tuple, value: Any, delete: bool
) -> None:
    """Any field set to any JSON value (or deleted): either the data reads back exactly as
    written, or a DatasetError naming meta.json or the chunk; never another exception."""
    with copy_of(template) as root:
        meta = load_meta(root)
        set_path(meta, path, value, delete)
        save_meta(root, meta)
        try:
            episodes, _ = read_everything(root)
        except BAD as error:
            assert "meta.json" in str(error) or "chunk-" in str(error), str(error)
            return
        expected, _ = read_everything(template)
        assert len(episodes) == len(expected)
        for got, want in zip(episodes, expected, strict=True):
            np.testing.assert_array_equal(got.frames, want.frames)
            np.testing.assert_array_equal(got.states, want.states)


INVALID_META = [  # (changes, a word the error must hold)
    ({("image_size",): [SIZE, -SIZE]}, "image_size"),
    ({("image_size",): "8x8"}, "image_size"),
    ({("control_dt",): 0}, "control_dt"),
    ({("num_episodes",): 4}, "num_episodes"),
    ({("chunks", 1, "file"): "../../outside.npz"}, "outside.npz"),
    ({("chunks", 1, "file"): "/etc/passwd"}, "/etc/passwd"),
    ({("chunks", 0, "episodes"): 3}, "chunks[0]"),
    ({("episodes", 1, "index"): 5}, "episodes[1].index"),
    ({("episodes", 2, "chunk"): 7}, "episodes[2].chunk"),
    ({("episodes", 0, "length"): -1}, "episodes[0].length"),
    ({("episodes", 0, "length"): 4}, "num_frames"),
    ({("episodes", 0, "length"): 4, ("num_frames",): sum(LENGTHS) - 1}, "chunk-000000.npz"),
    ({("episodes", 1, "task"): "other"}, "tasks"),
    ({("episodes", 1, "success"): True}, "success"),
]


@pytest.mark.parametrize(("changes", "named"), INVALID_META)
def test_invalid_meta_field_is_named(template: Path, changes: dict, named: str) -> None:
    with copy_of(template) as root:
        meta = load_meta(root)
        for path, value in changes.items():
            set_path(meta, path, value, delete=False)
        save_meta(root, meta)
        refused(root, named)


@FUZZ
@given(
    text=st.one_of(
        st.binary(max_size=300),
        JSON_VALUES.map(lambda value: json.dumps(value).encode()),
        st.just(b"[" * 100_000),
    )
)
def test_meta_that_is_not_an_index_is_refused(template: Path, text: bytes) -> None:
    with copy_of(template) as root:
        (root / "meta.json").write_bytes(text)
        refused(root, "meta.json")


# --- the writer ----------------------------------------------------------------------------


@FUZZ
@given(
    frames=st.sampled_from(["float", "gray", "scalar", "empty", "wrong_size", "strings"]),
    states=st.sampled_from(["ok", "nan", "short", "strings", "3d"]),
)
def test_writer_refuses_bad_episodes_and_writes_nothing(frames: str, states: str) -> None:
    good_frames, good_states = make_episode(0, 4)
    bad_frames = {
        "float": good_frames.astype(np.float32),
        "gray": good_frames[..., 0],
        "scalar": np.uint8(3),
        "empty": good_frames[:0],
        "wrong_size": good_frames[:, :4],
        "strings": np.full((4, SIZE, SIZE, 3), "x"),
    }[frames]
    bad_states = {
        "ok": good_states,
        "nan": np.where(np.arange(7) == 2, np.nan, good_states),
        "short": good_states[:2],
        "strings": [["a"] * 7] * 4,
        "3d": good_states[None],
    }[states]
    with tempfile.TemporaryDirectory() as tmp:
        writer = TrajectoryWriter(Path(tmp) / "d", image_size=(SIZE, SIZE))
        with pytest.raises(DatasetError):
            writer.add_episode(bad_frames, bad_states)
        writer.close()
        assert not (Path(tmp) / "d" / "meta.json").exists()


@FUZZ
@given(per_chunk=st.integers(1, 3), added=st.integers(0, 7))
def test_exception_inside_writer_leaves_only_complete_chunks(per_chunk: int, added: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        with pytest.raises(RuntimeError, match="operator stop"):
            with TrajectoryWriter(root, episodes_per_chunk=per_chunk) as writer:
                for index in range(added):
                    writer.add_episode(*make_episode(index, 3), task="t")
                raise RuntimeError("operator stop")
        flushed = added // per_chunk * per_chunk
        if flushed == 0:
            assert not (root / "meta.json").exists()
            return
        reader = TrajectoryReader(root)
        assert len(reader) == flushed
        for index in range(flushed):
            np.testing.assert_array_equal(reader.episode(index).frames, make_episode(index, 3)[0])
        assert not [p for p in root.rglob("*") if p.name.startswith(".")]  # no temp files


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from world_model.data.format import TrajectoryWriter

    rng = np.random.default_rng(0)
    with TrajectoryWriter(sys.argv[1], episodes_per_chunk=1) as writer:
        for index in range(100_000):
            frames = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
            states = np.full((8, 7), 0.5, np.float32)
            writer.add_episode(frames, states, task="t")
    """
)


def test_writer_killed_midway_leaves_a_readable_dataset(tmp_path: Path) -> None:
    """SIGKILL while episodes are being written: every episode in the index reads back, and a
    new writer appends after them."""
    root = tmp_path / "d"
    process = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(root)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            meta = root / "meta.json"
            if meta.exists() and json.loads(meta.read_text())["num_episodes"] >= 3:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the writer did not write 3 episodes in 60 s")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    reader = TrajectoryReader(root)
    count = len(reader)
    assert count >= 3
    for index in range(count):
        assert reader.episode(index).frames.shape == (8, 32, 32, 3)
    with TrajectoryWriter(root, episodes_per_chunk=1) as writer:
        writer.add_episode(np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 7)), task="after")
    assert len(TrajectoryReader(root)) == count + 1
    assert TrajectoryReader(root).episode(count).task == "after"
