"""The critic stage's latent cache: every frame of a trajectory dataset encoded once by the
frozen encoder, predicted 1..R steps ahead by the frozen predictor along the episode's own
actions (re-derived from its states, as the planner integrates them), and (``explore``)
predicted one step ahead under a random action of the planner's scale, stored in float16.

On sim-small's 15 646 frames (64 tokens x 192) that is 385 MB per latent set; building it costs
a few minutes on one CPU core against ~1 s per training step if each step encoded its frames.
The cache is a pure function of (model, dataset, R): a resumed run rebuilds the same one, or
reads it back from ``out/critic_latents.pt`` when its fingerprint matches.
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
from torch.utils.data import IterableDataset, get_worker_info

from robots.config import ConfigError
from world_model.data import actions_from_states, open_reader
from world_model.model import WorldModel
from world_model.train_loop import atomic_save

CACHE_VERSION = 2
EXPLORE_RADIUS = 0.06  # metres: random translations are uniform in direction, |t| <= this
EXPLORE_GRIPPER = 0.75  # random gripper moves are uniform in +-this, on half of the actions


@dataclass
class LatentCache:
    """Latents of every frame of a dataset, frames in dataset order (episode after episode).

    Attributes:
        encoded: float16 [F, N, D] layer-normed latents of the frames.
        predicted: float16 [R, F, N, D]; predicted[h - 1, f] is the latent of frame f + h as
            the predictor imagines it from frame f (rows whose f + h leaves the episode are
            predictions past its end, never sampled).
        explored: float16 [F, N, D] (or [0, N, D] without ``explore``): frame f + 1 as the
            predictor imagines it from frame f under the random action ``explored_actions[f]``
            (float32 [F, 7]), what a planner's candidates look like.
        states: float32 [F, 7] end-effector states.
        episode_of: int64 [F] episode of each frame. first, length: int64 [E] per episode.
        tasks: [E] task names.
    """

    encoded: torch.Tensor
    predicted: torch.Tensor
    explored: torch.Tensor
    explored_actions: torch.Tensor
    states: torch.Tensor
    episode_of: torch.Tensor
    first: torch.Tensor
    length: torch.Tensor
    tasks: list[str]

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class CacheBatches(IterableDataset):
    """An endless, deterministic stream of batches of indices into a ``LatentCache``: item i is
    ``self.draw_item(rng)`` with rng a pure function of (seed, rank, i), so ``start_item``
    resumes it exactly; DataLoader worker w of W takes every W-th item. Subclasses write
    ``draw_item``.

    Attributes:
        first, last: [E] each cache episode's first and last frame. episode_of: [F].
    """

    def __init__(
        self, cache: LatentCache, batch_size: int, seed: int, rank: int, start_item: int
    ) -> None:
        super().__init__()
        self.batch_size, self.seed, self.rank, self.start_item = batch_size, seed, rank, start_item
        self.first = cache.first.numpy()
        self.last = self.first + cache.length.numpy() - 1
        self.episode_of = cache.episode_of.numpy()

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        item = self.start_item
        while True:
            if item % workers == worker:
                yield self.draw_item(np.random.default_rng([self.seed, self.rank, item]))
            item += 1

    def draw_item(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch of indices."""
        raise NotImplementedError


def on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A cached (float16) latent or state tensor as float32 on ``device``."""
    return tensor.to(device, torch.float32)


def fingerprint(model: WorldModel, episodes: list[dict], rollout_steps: int, explore: bool) -> str:
    """sha256 over the frozen weights (encoder, predictor), the episode index, R and explore."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if name.startswith(("encoder.", "predictor.")):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    summary = [(e["index"], e["length"], e["task"]) for e in episodes]
    digest.update(json.dumps([CACHE_VERSION, rollout_steps, explore, summary]).encode())
    return digest.hexdigest()


@torch.no_grad()
def predict_ahead(
    model: WorldModel, latents: torch.Tensor, states: torch.Tensor, steps: int, batch: int
) -> torch.Tensor:
    """Latents [R, T, N, D] of frames t+1..t+R predicted from each frame t of one episode.

    Args:
        latents: [T, N, D] the episode's encoded latents; states: [T, 7] its states.
        steps: R >= 1. batch: frames per predictor call.
    """
    actions = actions_from_states(states)  # [T, 7], the last one zero
    padded = torch.cat((actions, actions.new_zeros(steps, 7)))
    windows = torch.stack([padded[t : t + steps] for t in range(len(states))])  # [T, R, 7]
    parts = [
        model.rollout(latents[i : i + batch], states[i : i + batch], windows[i : i + batch])
        for i in range(0, len(states), batch)
    ]
    return torch.cat(parts).transpose(0, 1)  # [R, T, N, D]


def random_actions(count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 7] random 1-step actions of a planner's scale: a translation of uniform
    direction and length up to ``EXPLORE_RADIUS``, no rotation, and on half of them a gripper
    move uniform in +-``EXPLORE_GRIPPER``."""
    direction = torch.randn(count, 3, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-9)
    length = EXPLORE_RADIUS * torch.rand(count, 1, generator=generator)
    gripper = EXPLORE_GRIPPER * (2 * torch.rand(count, 1, generator=generator) - 1)
    gripper = gripper * (torch.rand(count, 1, generator=generator) < 0.5)
    return torch.cat((direction * length, torch.zeros(count, 3), gripper), dim=1)


@torch.no_grad()
def build_cache(
    model: WorldModel,
    source,
    rollout_steps: int,
    batch: int = 64,
    verbose: bool = True,
    explore: bool = False,
    tasks: list[str] | None = None,
    stage: str = "critic",
) -> LatentCache:
    """Encode (and predict from) every frame of ``source`` (a dataset folder or reader), of
    the episodes of ``tasks`` only when given (their order kept; cache episode i is the i-th
    of them); progress lines name the training ``stage``."""
    reader = open_reader(source)
    chosen = chosen_episodes(reader.episodes, tasks)
    generator = torch.Generator().manual_seed(0)
    encoded, predicted, states, episode_of, tasks = [], [], [], [], []
    explored, explored_actions = [], []
    began = time.perf_counter()
    for index, number in enumerate(chosen):
        episode = reader.episode(number)
        frames = torch.from_numpy(episode.frames)
        state = torch.from_numpy(episode.states).float().to(model.device)
        latents = torch.cat(
            [model.encode(frames[i : i + batch]) for i in range(0, len(frames), batch)]
        )
        encoded.append(latents.half().cpu())
        if rollout_steps:
            ahead = predict_ahead(model, latents, state, rollout_steps, batch)
            predicted.append(ahead.half().cpu())
        if explore:
            moves = random_actions(len(frames), generator)
            windows = moves.to(model.device)[:, None]  # [T, 1, 7]
            parts = [
                model.rollout(latents[i : i + batch], state[i : i + batch], windows[i : i + batch])
                for i in range(0, len(frames), batch)
            ]
            explored.append(torch.cat(parts)[:, 0].half().cpu())
            explored_actions.append(moves)
        states.append(state.cpu())
        episode_of.append(torch.full((len(frames),), index, dtype=torch.int64))
        tasks.append(episode.task)
        if verbose and (index + 1) % 25 == 0:
            print(
                f"[train {stage}] cached {index + 1}/{len(chosen)} episodes "
                f"({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    lengths = torch.tensor([len(s) for s in states], dtype=torch.int64)
    first = torch.cumsum(lengths, 0) - lengths
    all_encoded = torch.cat(encoded)
    if rollout_steps:
        all_predicted = torch.cat(predicted, dim=1)
    else:
        all_predicted = all_encoded.new_zeros((0, *all_encoded.shape))
    empty = all_encoded.new_zeros((0, *all_encoded.shape[1:]))
    return LatentCache(
        encoded=all_encoded,
        predicted=all_predicted,
        explored=torch.cat(explored) if explore else empty,
        explored_actions=torch.cat(explored_actions) if explore else torch.zeros(0, 7),
        states=torch.cat(states),
        episode_of=torch.cat(episode_of),
        first=first,
        length=lengths,
        tasks=tasks,
    )


def chosen_episodes(episodes: list[dict], tasks: list[str] | None) -> list[int]:
    """Indices of the dataset's ``episodes`` of ``tasks`` (all of them for None).

    Raises:
        ConfigError: no episode of those tasks.
    """
    chosen = [i for i, e in enumerate(episodes) if tasks is None or e["task"] in tasks]
    if not chosen:
        raise ConfigError(f"no episode of the tasks {tasks} in the dataset")
    return chosen


def load_or_build_cache(
    model: WorldModel,
    source,
    rollout_steps: int,
    batch: int,
    cache_file: Path | None,
    verbose: bool = True,
    explore: bool = False,
    tasks: list[str] | None = None,
    stage: str = "critic",
) -> LatentCache:
    """The cache from ``cache_file`` when it holds this model's and dataset's latents (of the
    episodes of ``tasks``, when given), else built (and written there atomically, when a file
    is given); progress lines name the training ``stage``."""
    reader = open_reader(source)
    episodes = [reader.episodes[i] for i in chosen_episodes(reader.episodes, tasks)]
    key = fingerprint(model, episodes, rollout_steps, explore)
    if cache_file is not None and cache_file.is_file():
        try:
            stored = torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as error:  # a torn or foreign file: rebuild it
            warnings.warn(
                f"rebuilding the critic's latent cache {cache_file}: {error}", stacklevel=2
            )
        else:
            if stored.get("fingerprint") == key:
                return LatentCache(**stored["cache"])
            warnings.warn(
                f"{cache_file} holds another model's or dataset's latents; rebuilding it",
                stacklevel=2,
            )
    began = time.perf_counter()
    cache = build_cache(model, reader, rollout_steps, batch, verbose, explore, tasks, stage)
    if verbose:
        print(
            f"[train {stage}] latent cache: {len(cache.states)} frames, {rollout_steps} step(s) "
            f"predicted, {time.perf_counter() - began:.0f} s",
            flush=True,
        )
    if cache_file is not None:
        atomic_save({"fingerprint": key, "cache": cache.to_dict()}, cache_file)
    return cache
