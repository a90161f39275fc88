"""``TrajectoryDataset``: a deterministic, resumable stream of clips (or batches of clips) of T
frames at a frame stride, sharded across DDP ranks and DataLoader workers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from world_model.data.format import DatasetError, TrajectoryReader, actions_from_states
from world_model.data.lerobot import LeRobotReader, open_reader

ACTION_SOURCES = ("states", "stored")
GRIPPER_EVENT = 0.05  # a change of gripper closedness between two clip frames that counts as one


class TrajectoryDataset(IterableDataset):
    """Clips ``{"frames": uint8 [T, H, W, 3], "states": [T, 7], "actions": [T, 7],
    "episode": int, "start": int}`` (with a leading batch dim when ``batch_size`` is set).

    The clip starting at frame s of an episode holds frames s, s+k, ..., s+(T-1)k (k the
    stride). Its action i takes state i to state i+1 of the clip; by default it is re-derived
    as ``pose_delta(state_i, state_{i+1})`` so every stride stays in the action layout; the
    last action is zero (there is no next frame in the clip).

    Order: each epoch shuffles the chunks, takes them ``chunks_in_memory`` at a time and
    shuffles the clips of those chunks together (so only that many chunk files are in memory).
    The stream is a pure function of (seed, epoch): rank r of ``world_size`` takes every
    world_size-th clip (all ranks get equally many), DataLoader worker w of W takes every W-th
    item, so ``DataLoader(ds, batch_size=None, num_workers=W)`` yields the same sequence for
    any W, and ``start_item`` resumes it exactly.
    """

    def __init__(
        self,
        root: str | Path | TrajectoryReader | LeRobotReader,
        clip_len: int,
        frame_stride: int = 1,
        batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        tasks: list[str] | None = None,
        action_source: str = "states",
        chunks_in_memory: int = 4,
        repeat: bool = False,
        start_item: int = 0,
        gripper_oversample: int = 1,
    ) -> None:
        """Args:
        root: dataset folder (``meta.json`` + chunks, or a LeRobot folder), or an opened
            reader (``open_reader``). clip_len: frames per clip (T >= 1).
        frame_stride: k >= 1, frames between consecutive clip frames.
        batch_size: None yields single clips; an int yields stacked batches (last partial
            batch of an epoch dropped).
        shuffle: shuffle per epoch (else dataset order). seed: base of the shuffling.
        rank, world_size: this process's shard (DDP).
        tasks: keep only episodes of these tasks (None = all).
        action_source: "states" (re-derived from states) or "stored" (the recorded actions;
            only with frame_stride 1).
        chunks_in_memory: chunk files mixed (and held) at once. repeat: loop over epochs
            forever (training). start_item: items of the stream to skip (resume).
        gripper_oversample: clips in which the gripper opens or closes (its closedness changes
            by more than ``GRIPPER_EVENT`` between two consecutive clip frames) are listed this
            many times per epoch. Such clips are rare (a grasp closes the hand once), and their
            visual change is small, so a predictor trained on the plain stream learns to
            ignore the gripper action (``scripts/probe_gripper.py`` measures it). Values > 1
            read every chunk's states once, at construction.
        """
        super().__init__()
        if clip_len < 1 or frame_stride < 1:
            raise ValueError(f"clip_len and frame_stride must be >= 1: {clip_len}, {frame_stride}")
        if action_source not in ACTION_SOURCES:
            raise ValueError(f"action_source must be one of {ACTION_SOURCES}: {action_source!r}")
        if action_source == "stored" and frame_stride != 1:
            raise ValueError("action_source='stored' needs frame_stride 1 (use 'states')")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        if isinstance(gripper_oversample, bool) or not isinstance(gripper_oversample, int):
            raise ValueError(f"gripper_oversample must be an integer, got {gripper_oversample!r}")
        if gripper_oversample < 1:
            raise ValueError(f"gripper_oversample must be >= 1, got {gripper_oversample}")
        self.reader = open_reader(root)
        self.clip_len, self.frame_stride, self.batch_size = clip_len, frame_stride, batch_size
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.action_source, self.repeat, self.start_item = action_source, repeat, start_item
        self.chunks_in_memory = max(1, chunks_in_memory)
        self.clips = self._index_clips(tasks)
        if gripper_oversample > 1:
            self.clips = self._oversample_gripper_events(gripper_oversample)
        if self.items_per_epoch < 1:
            raise DatasetError(
                f"{root}: {len(self.clips)} clips of {clip_len} frames at stride {frame_stride} "
                f"cannot fill one {'batch of ' + str(batch_size) if batch_size else 'item'} on "
                f"each of {world_size} rank(s)"
            )

    def _index_clips(self, tasks: list[str] | None) -> np.ndarray:
        """[M, 4] int64 rows (chunk, episode, row of the episode's first frame in its chunk,
        start frame), in dataset order."""
        span = (self.clip_len - 1) * self.frame_stride + 1
        rows, offsets = [], {}
        for entry in self.reader.episodes:
            chunk = entry["chunk"]
            offset = offsets.get(chunk, 0)
            offsets[chunk] = offset + entry["length"]
            if tasks is not None and entry["task"] not in tasks:
                continue
            for start in range(entry["length"] - span + 1):
                rows.append((chunk, entry["index"], offset, start))
        return np.array(rows, dtype=np.int64).reshape(-1, 4)

    def gripper_events(self) -> np.ndarray:
        """[M] bool: whether clip m of ``clips`` opens or closes the gripper (see
        ``gripper_oversample``). Reads every chunk once."""
        events = np.zeros(len(self.clips), dtype=bool)
        steps = self.frame_stride * np.arange(self.clip_len)
        for chunk in np.unique(self.clips[:, 0]):
            mine = np.flatnonzero(self.clips[:, 0] == chunk)
            gripper = self.reader.load_chunk(int(chunk))["states"][:, 6]
            rows = (self.clips[mine, 2] + self.clips[mine, 3])[:, None] + steps  # [m, T]
            events[mine] = (np.abs(np.diff(gripper[rows], axis=1)) > GRIPPER_EVENT).any(axis=1)
        return events

    def _oversample_gripper_events(self, factor: int) -> np.ndarray:
        """``clips`` with every gripper-event clip listed ``factor`` times (dataset order)."""
        repeats = np.where(self.gripper_events(), factor, 1)
        return np.repeat(self.clips, repeats, axis=0)

    @property
    def clips_per_rank(self) -> int:
        """Clips each rank sees per epoch."""
        return len(self.clips) // self.world_size

    @property
    def items_per_epoch(self) -> int:
        """Items (clips or batches) each rank yields per epoch."""
        return self.clips_per_rank // (self.batch_size or 1)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Rows of ``clips`` that this rank visits in ``epoch``, in order."""
        if not self.shuffle:
            order = np.arange(len(self.clips))
        else:
            rng = np.random.default_rng([self.seed, epoch])
            chunks = rng.permutation(np.unique(self.clips[:, 0]))
            order = []
            for first in range(0, len(chunks), self.chunks_in_memory):
                window = chunks[first : first + self.chunks_in_memory]
                rows = np.flatnonzero(np.isin(self.clips[:, 0], window))
                order.append(rng.permutation(rows))
            order = np.concatenate(order)
        return order[self.rank :: self.world_size][: self.clips_per_rank]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        per_item = self.batch_size or 1
        cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        epoch, position = divmod(self.start_item, self.items_per_epoch)
        while self.repeat or epoch == 0:
            order = self.epoch_order(epoch)
            for item in range(position, self.items_per_epoch):
                if item % workers == worker:
                    rows = order[item * per_item : (item + 1) * per_item]
                    clips = [self._clip(self.clips[row], cache) for row in rows]
                    yield self._collate(clips) if self.batch_size else clips[0]
            epoch, position = epoch + 1, 0

    def _chunk(self, chunk: int, cache: OrderedDict) -> dict[str, np.ndarray]:
        if chunk not in cache:
            self.reader._cached = None  # the reader's own one-chunk cache is not needed here
            cache[chunk] = self.reader.load_chunk(chunk)
            while len(cache) > self.chunks_in_memory:
                cache.popitem(last=False)
        cache.move_to_end(chunk)
        return cache[chunk]

    def _clip(self, row: np.ndarray, cache: OrderedDict) -> dict[str, torch.Tensor]:
        chunk, episode, offset, start = (int(value) for value in row)
        arrays = self._chunk(chunk, cache)
        rows = offset + start + self.frame_stride * np.arange(self.clip_len)
        if rows[-1] >= len(arrays["states"]):
            raise DatasetError(f"chunk {chunk}: episode {episode} runs past the chunk's end")
        states = torch.from_numpy(arrays["states"][rows].astype(np.float32))
        if self.action_source == "stored":
            actions = torch.from_numpy(arrays["actions"][rows].astype(np.float32))
            actions[-1] = 0.0
        else:
            actions = actions_from_states(states)
        return {
            "frames": torch.from_numpy(np.ascontiguousarray(arrays["frames"][rows])),
            "states": states,
            "actions": actions,
            "episode": torch.tensor(episode),
            "start": torch.tensor(start),
        }

    @staticmethod
    def _collate(clips: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([clip[key] for clip in clips]) for key in clips[0]}
