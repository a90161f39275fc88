"""The subgoal stage (``jepa-mpc train subgoals``): fit the subgoal generator
(``world_model.subgoals``) on the frozen encoder's latents of successful episodes; nothing
else moves.

Samples (``SubgoalSamples``): a frame t of a successful episode, a goal g that is its last
frame (what a goal image shows; ``final_goal_fraction``) or a later frame of it (hindsight),
and k uniform in 1..max_ahead; the target is the encoded latent of frame min(t + k, g): the
frame the data showed k steps later on its way to g (g itself once it is closer than k).
Loss: the mean |G(z_t, s_t, z_g, k) - z_target| over tokens and features (the planner's L1
energy) plus ``state_weight`` x the mean |proposed - recorded| end-effector position and
gripper of the target frame in the readout's units (``world_model.readout.STATE_SCALE``).
Every ``holdout_every``-th successful episode is held out and scored each step without
gradients (``holdout_l1``) beside the two trivial answers, the current frame (``copy_l1``) and
the goal (``goal_l1``); ``holdout_cm`` is the held-out proposals' median position error (cm).

DAgger (``dagger_data``: datasets of ``jepa-mpc collect --planner``): each batch also draws as
many of the frames a planner visited, and ``dagger_weight`` x the one-step state proposal's
error against the relabelling expert's target (``world_model.dagger_data``) joins the loss
(``dagger_l1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robots.config import ConfigError
from world_model.critic_data import (
    CacheBatches,
    LatentCache,
    chosen_episodes,
    load_or_build_cache,
    on_device,
)
from world_model.dagger_data import LabelledCache, load_or_build_labelled
from world_model.data import open_reader
from world_model.model import WorldModel
from world_model.subgoals import SUBGOAL_STATE, state_scale
from world_model.train_critic import freeze
from world_model.train_predictor import SupervisedObjective


@dataclass
class SubgoalSection:
    """The subgoal stage's settings.

    Attributes:
        hidden, depth, heads, max_ahead: sizes of a new generator (``SubgoalConfig``); a model
            that already has one keeps its own.
        final_goal_fraction: share of samples whose goal is their episode's last frame.
        state_weight: weight of the proposed state's error (position and gripper).
        holdout_every: every n-th successful episode is held out (0: none).
        successful_only: train on episodes the collector marked successful only (a failed
            or random-walk episode's later frames are not a way to its last frame's scene).
        encode_batch: frames per encoder call while building the cache.
        cache_latents: keep the cache in ``out/subgoal_latents.pt`` (a resumed run reuses it;
            the DAgger frames' in ``out/subgoal_dagger_latents.pt``).
        dagger_data: DAgger datasets (``jepa-mpc collect --planner``) whose expert labels
            supervise the one-step state proposal (empty: none).
        dagger_weight: weight of that error in the loss.
    """

    hidden: int = 256
    depth: int = 4
    heads: int = 4
    max_ahead: int = 6
    final_goal_fraction: float = 0.7
    state_weight: float = 1.0
    holdout_every: int = 10
    successful_only: bool = True
    encode_batch: int = 64
    cache_latents: bool = True
    dagger_data: list[str] = field(default_factory=list)
    dagger_weight: float = 1.0


def check_section(section: SubgoalSection) -> None:
    """Raise ``ConfigError`` naming the first setting out of range."""
    if not 0.0 <= section.final_goal_fraction <= 1.0:
        raise ConfigError(
            f"subgoals.final_goal_fraction must be in [0, 1], got {section.final_goal_fraction}"
        )
    if min(section.hidden, section.depth, section.heads, section.max_ahead) < 1:
        raise ConfigError("subgoals.hidden, depth, heads and max_ahead must be >= 1")
    if section.hidden % section.heads:
        raise ConfigError(
            f"subgoals.hidden {section.hidden} must be a multiple of heads {section.heads}"
        )
    if section.state_weight < 0:
        raise ConfigError(f"subgoals.state_weight must be >= 0, got {section.state_weight}")
    if section.dagger_weight < 0:
        raise ConfigError(f"subgoals.dagger_weight must be >= 0, got {section.dagger_weight}")
    if isinstance(section.dagger_data, str):
        raise ConfigError("subgoals.dagger_data must be a list of dataset folders")
    if section.holdout_every < 0:
        raise ConfigError(f"subgoals.holdout_every must be >= 0, got {section.holdout_every}")


def usable_episodes(metas: list[dict], successful_only: bool) -> np.ndarray:
    """Indices of the episodes (their index-entry ``metas``) to learn ways to goals from: the
    successful ones (an entry without the flag counts as one), or all of them."""
    keep = [not successful_only or meta.get("success", True) for meta in metas]
    return np.flatnonzero(np.array(keep, dtype=bool)).astype(np.int64)


def split_episodes(usable: np.ndarray, holdout_every: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) cache episode indices: every ``holdout_every``-th of the ``usable``
    ones is held out (none for 0, or when that would leave no training episode)."""
    if holdout_every < 1 or len(usable) < 2:
        return usable, usable[:0]
    held = np.arange(len(usable)) % holdout_every == holdout_every - 1
    return usable[~held], usable[held]


class SubgoalSamples(CacheBatches):
    """An endless, deterministic stream of batches of (frame, goal, target, ahead) indices into
    a ``LatentCache`` (``CacheBatches``: resumable, split across workers). Each batch also
    carries a held-out batch (keys prefixed ``holdout_``) when episodes are held out.

    Attributes:
        clips: [M] the training frames that batches start from.
    """

    def __init__(
        self,
        cache: LatentCache,
        section: SubgoalSection,
        train_episodes: np.ndarray,
        holdout_episodes: np.ndarray,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        start_item: int = 0,
        labelled_frames: int = 0,
    ) -> None:
        super().__init__(cache, batch_size, seed, rank, start_item)
        if not len(train_episodes):
            raise ConfigError("no episode to train the subgoal generator on")
        self.section = section
        self.labelled_frames = labelled_frames
        self.clips = self._frames(train_episodes)
        self.holdout = self._frames(holdout_episodes)

    def _frames(self, episodes: np.ndarray) -> np.ndarray:
        parts = [np.arange(self.first[e], self.last[e] + 1) for e in episodes]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def draw_item(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A training batch (with DAgger frames, ``dagger_frame``, when there are some) and,
        when episodes are held out, a held-out one."""
        batch = self.draw(self.clips, rng)
        if self.labelled_frames:
            chosen = rng.integers(0, self.labelled_frames, self.batch_size)
            batch["dagger_frame"] = torch.from_numpy(chosen.astype(np.int64))
        if len(self.holdout):
            held = self.draw(self.holdout, rng)
            batch.update({f"holdout_{key}": value for key, value in held.items()})
        return batch

    def draw(self, frames: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch from ``frames``: {"frame", "goal", "target", "ahead": int64 [B]}."""
        size = self.batch_size
        frame = rng.choice(frames, size)
        last = self.last[self.episode_of[frame]]
        later = frame + np.floor(rng.random(size) * (last - frame + 1)).astype(np.int64)
        goal = np.where(rng.random(size) < self.section.final_goal_fraction, last, later)
        ahead = rng.integers(1, self.section.max_ahead + 1, size)
        target = np.minimum(frame + ahead, goal)
        return {
            name: torch.from_numpy(np.asarray(value, dtype=np.int64))
            for name, value in (
                ("frame", frame),
                ("goal", goal),
                ("target", target),
                ("ahead", ahead),
            )
        }


class SubgoalObjective(SupervisedObjective):
    """Training state of the subgoal stage: the frozen model, its latent cache and the
    trainable ``module`` (the generator; a model without one gets a fresh one). The samples
    are a function of the step, so there is no state beyond the generator's weights."""

    metric_names = (
        "loss",
        "latent_l1",
        "holdout_l1",
        "copy_l1",
        "goal_l1",
        "holdout_cm",
        "dagger_l1",
    )

    def __init__(
        self,
        model: WorldModel,
        section: SubgoalSection,
        source,
        out: Path | None,
        verbose: bool = True,
        tasks: list[str] | None = None,
    ) -> None:
        """Args: model: the world model; section: ``SubgoalSection``; source: the dataset
        (folder or opened reader); out: the run folder (cache file), None for no file;
        tasks: cache (and train on) the episodes of these tasks only (None: all)."""
        check_section(section)
        self.model, self.section = model, section
        freeze(model.encoder, model.predictor, model.readout, model.critic)
        if model.subgoals is None:
            model.add_subgoals(section.hidden, section.depth, section.heads, section.max_ahead)
        reader = open_reader(source)
        metas = [reader.episodes[i] for i in chosen_episodes(reader.episodes, tasks)]
        cache_file = (
            out / "subgoal_latents.pt" if out is not None and section.cache_latents else None
        )
        self.cache = load_or_build_cache(
            model,
            reader,
            0,
            section.encode_batch,
            cache_file,
            verbose,
            tasks=tasks,
            stage="subgoals",
        )
        usable = usable_episodes(metas, section.successful_only)
        if not len(usable):
            raise ConfigError("no successful episode in the dataset to train subgoals on")
        self.train_episodes, self.holdout_episodes = split_episodes(usable, section.holdout_every)
        self.labelled: LabelledCache | None = None
        if section.dagger_data:
            labelled_file = (
                out / "subgoal_dagger_latents.pt"
                if out is not None and section.cache_latents
                else None
            )
            self.labelled = load_or_build_labelled(
                model, list(section.dagger_data), section.encode_batch, labelled_file, verbose
            )
        model.subgoals.train()
        self.module = model.subgoals

    def stream(self, batch_size: int, seed: int, rank: int, start: int) -> SubgoalSamples:
        """The batches this objective trains on, from item ``start`` (resume)."""
        return SubgoalSamples(
            self.cache,
            self.section,
            self.train_episodes,
            self.holdout_episodes,
            batch_size,
            seed,
            rank,
            start,
            0 if self.labelled is None else len(self.labelled.states),
        )

    def inputs(self, batch: dict, prefix: str = "") -> tuple[torch.Tensor, ...]:
        """(frame latents [B, N, D], their states [B, 7], goal latents, target latents, target
        states, steps ahead [B]) on the model's device, for the batch's ``prefix`` part."""
        cache, device = self.cache, self.model.device
        frame, goal, target = (batch[prefix + name] for name in ("frame", "goal", "target"))
        return (
            on_device(cache.encoded[frame], device),
            on_device(cache.states[frame], device),
            on_device(cache.encoded[goal], device),
            on_device(cache.encoded[target], device),
            on_device(cache.states[target], device),
            batch[prefix + "ahead"].to(device),
        )

    def errors(
        self, module: nn.Module, batch: dict, autocast, prefix: str = ""
    ) -> tuple[torch.Tensor, ...]:
        """(latent L1, state error in readout units, position errors [B] in metres, the
        current frame's L1 to the target, the goal's L1 to the target) of one batch part."""
        latents, states, goals, targets, target_states, ahead = self.inputs(batch, prefix)
        with autocast():
            proposed, proposed_states = module(latents, states, goals, ahead)
        dims = list(SUBGOAL_STATE)
        miss = (proposed_states.float() - target_states)[:, dims]
        state_error = (miss / state_scale(miss)).abs().mean()
        return (
            (proposed.float() - targets).abs().mean(),
            state_error,
            miss[:, :3].norm(dim=-1),
            (latents - targets).abs().mean(),
            (goals - targets).abs().mean(),
        )

    def dagger_error(self, module: nn.Module, batch: dict, autocast) -> torch.Tensor:
        """The one-step state proposal's mean error on the batch's DAgger frames against the
        relabelling expert's targets, in the readout's units."""
        labelled, device = self.labelled, self.model.device
        frame = batch["dagger_frame"]
        states = on_device(labelled.states[frame], device)
        goals = on_device(labelled.goals[labelled.goal_of[frame]], device)
        with autocast():
            _, proposed = module(on_device(labelled.latents[frame], device), states, goals, 1)
        dims = list(SUBGOAL_STATE)
        miss = (proposed.float() - on_device(labelled.targets[frame], device))[:, dims]
        return (miss / state_scale(miss)).abs().mean()

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """Mean L1 of the proposals against the data's frames k steps ahead, plus the weighted
        state error (and the weighted DAgger error)."""
        latent_l1, state_error, apart, copy_l1, goal_l1 = self.errors(module, batch, autocast)
        loss = latent_l1 + self.section.state_weight * state_error
        dagger = loss.new_full((), float("nan"))
        if "dagger_frame" in batch:
            dagger = self.dagger_error(module, batch, autocast)
            loss = loss + self.section.dagger_weight * dagger
        holdout = holdout_cm = loss.new_full((), float("nan"))
        if "holdout_frame" in batch:
            with torch.no_grad():
                holdout, _, apart, copy_l1, goal_l1 = self.errors(
                    module, batch, autocast, "holdout_"
                )
            holdout_cm = 100 * apart.median()
        return {
            "loss": loss,
            "latent_l1": latent_l1.detach(),
            "holdout_l1": holdout,
            "copy_l1": copy_l1,
            "goal_l1": goal_l1,
            "holdout_cm": holdout_cm.detach(),
            "dagger_l1": dagger.detach(),
        }

    def final_model(self) -> WorldModel:
        self.model.subgoals.eval()
        return self.model
