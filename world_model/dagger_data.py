"""DAgger frames for the subgoal generator's state head (``jepa-mpc train subgoals`` with
``subgoals.dagger_data``).

A DAgger dataset (``jepa-mpc collect --planner``) holds the frames a planner visited on its way
to a goal image and, for each, what the relabelling expert would have done there
(``expert_actions``) and the goal image itself (``goal_frames``; ``docs/data_format.md``).
Successful demonstrations never show the states a learner drifts into (hovering 1 cm off the
cube, past the target with the cube in hand); these frames do, each with the expert's way out.
They supervise the generator's one-step state proposal only: the target is the frame's state
moved by the expert's translation, with the expert's gripper command as an intent (1 closed,
0 open). There is no latent target: nothing showed what the camera would have seen had the
expert acted.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robots.config import ConfigError
from robots.franka import GRIPPER, POS
from world_model.critic_data import fingerprint
from world_model.data import open_reader
from world_model.model import WorldModel
from world_model.train_loop import atomic_save


@dataclass
class LabelledCache:
    """Encoded DAgger frames of one or more datasets.

    Attributes:
        latents: float16 [F, N, D] the frames' latents. states: float32 [F, 7].
        targets: float32 [F, 7] the state the expert's action leads to (``label_targets``).
        goals: float16 [E, N, D] each episode's goal image, encoded. goal_of: int64 [F] the
            episode (row of ``goals``) of each frame.
    """

    latents: torch.Tensor
    states: torch.Tensor
    targets: torch.Tensor
    goals: torch.Tensor
    goal_of: torch.Tensor

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def label_targets(states: np.ndarray, expert_actions: np.ndarray) -> np.ndarray:
    """[T, 7] targets of the state head: ``states`` [T, 7] moved by the expert's translation,
    the angles kept, the gripper the expert's command as an intent (1 closed, 0 open)."""
    targets = np.array(states, dtype=np.float32, copy=True)
    targets[:, POS] += expert_actions[:, POS]
    targets[:, GRIPPER] = (expert_actions[:, GRIPPER] > 0).astype(np.float32)
    return targets


def dataset_key(model_key: str, reader) -> str:
    """sha256 over the frozen weights' fingerprint, one dataset's episodes and chunk hashes."""
    episodes = [(e["index"], e["length"], e["task"]) for e in reader.episodes]
    chunks = [chunk.get("sha256") for chunk in getattr(reader, "meta", {}).get("chunks", [])]
    payload = json.dumps(["dagger", model_key, episodes, chunks]).encode()
    return hashlib.sha256(payload).hexdigest()


def merge(parts: list[LabelledCache]) -> LabelledCache:
    """One cache of several datasets' parts (each part's goal indices shifted past the goals
    of the parts before it)."""
    offsets = np.cumsum([0] + [len(part.goals) for part in parts[:-1]])
    return LabelledCache(
        torch.cat([part.latents for part in parts]),
        torch.cat([part.states for part in parts]),
        torch.cat([part.targets for part in parts]),
        torch.cat([part.goals for part in parts]),
        torch.cat(
            [part.goal_of + int(offset) for part, offset in zip(parts, offsets, strict=True)]
        ),
    )


@torch.no_grad()
def build_labelled(
    model: WorldModel, readers: list, batch: int = 64, verbose: bool = True
) -> LabelledCache:
    """Encode every labelled episode of ``readers`` (frames and goal image).

    Raises:
        ConfigError: a dataset holds no expert labels.
    """
    latents, states, targets, goals, goal_of = [], [], [], [], []
    began = time.perf_counter()
    for reader in readers:
        labelled = 0
        for number in range(len(reader)):
            episode = reader.episode(number)
            if getattr(episode, "expert_actions", None) is None:
                continue
            frames = torch.from_numpy(episode.frames)
            latents.append(
                torch.cat(
                    [model.encode(frames[i : i + batch]) for i in range(0, len(frames), batch)]
                )
                .half()
                .cpu()
            )
            goals.append(model.encode(episode.goal_frame[None]).half().cpu())
            states.append(torch.from_numpy(episode.states).float())
            targets.append(torch.from_numpy(label_targets(episode.states, episode.expert_actions)))
            goal_of.append(torch.full((len(frames),), len(goals) - 1, dtype=torch.int64))
            labelled += 1
            if verbose and len(goals) % 25 == 0:
                print(
                    f"[train subgoals] cached {len(goals)} DAgger episodes "
                    f"({time.perf_counter() - began:.0f} s)",
                    flush=True,
                )
        if not labelled:
            raise ConfigError(
                f"{getattr(reader, 'root', 'a DAgger dataset')}: no expert labels (collect "
                "DAgger data with `jepa-mpc collect --planner PRESET --model MODEL`)"
            )
    return LabelledCache(
        torch.cat(latents),
        torch.cat(states),
        torch.cat(targets),
        torch.cat(goals),
        torch.cat(goal_of),
    )


def load_or_build_labelled(
    model: WorldModel, roots: list[str], batch: int, cache_file: Path | None, verbose: bool = True
) -> LabelledCache:
    """The DAgger frames of ``roots``: each dataset's part from ``cache_file`` when it holds
    this model's latents of it, else encoded (and the file rewritten atomically, when given),
    so a new DAgger round encodes only its own data."""
    readers = [open_reader(root) for root in roots]
    model_key = fingerprint(model, [], 0, False)
    keys = [dataset_key(model_key, reader) for reader in readers]
    stored: dict = {}
    if cache_file is not None and cache_file.is_file():
        try:
            stored = torch.load(cache_file, map_location="cpu", weights_only=True).get("parts", {})
        except Exception as error:  # a torn or foreign file: rebuild it
            warnings.warn(f"rebuilding the DAgger cache {cache_file}: {error}", stacklevel=2)
    parts = [
        LabelledCache(**stored[key])
        if key in stored
        else build_labelled(model, [reader], batch, verbose)
        for key, reader in zip(keys, readers, strict=True)
    ]
    if cache_file is not None and any(key not in stored for key in keys):
        cached = {key: part.to_dict() for key, part in zip(keys, parts, strict=True)}
        atomic_save({"parts": cached}, cache_file)
    return merge(parts)
