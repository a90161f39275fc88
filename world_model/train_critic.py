"""The critic stage (``jepa-mpc train critic``): fit the goal-conditioned cost-to-go head
(``world_model.critic``) on the frozen encoder's and predictor's latents; nothing else moves.

Samples (``CriticSamples``): a frame t of an episode; the frame it shows, p = t + h, is either
encoded (h = 0) or *predicted* h steps ahead from frame t along the episode's own actions
(what the planner's rollout would imagine); a goal g that is either a later frame of the same
episode (hindsight; often its last frame, what a goal image shows) or a frame of another
episode (a negative). Targets (``critic_targets``), in control steps:

  same episode    y = min(j - p, 1 + V'(z_{p+1}, s_{p+1}, g))   (0 when g is frame p itself)
  other episode   y = max_steps                                 (a goal the data never reached)

and, on imagined steps (``imagined_weight``), a one-sided bound: from frame t, the predictor's
latent after a *random* action of the planner's scale must not look more than one step closer
to the goal than frame t itself, V(ẑ_{t+1}(a), s_{t+1}(a), g) >= V'(z_t, s_t, g) - 1. A planner
ranks hundreds of such imagined outcomes and picks the lowest; without the bound the critic is
free to be optimistic about outcomes no episode showed, and the planner finds them.

and, on the data's own steps (``rank_weight``), a ranking: from frame t toward a same-episode
goal, the predictor's latent after the episode's own action must score at least a margin lower
than its latent after a random action, V(ẑ_{t+1}(a_data)) + m <= V(ẑ_{t+1}(a_random)), the margin
m (``rank_margin`` steps) shrinking with how close the random action lands to the data's. This
is what a 1-step planner asks of the critic: the *local* order of its candidates, which the
regression targets alone taught no better than the latent L1 energy (docs/sim_small.md).

j - p is what the episode took (an upper bound); the temporal-difference term, from a slowly
moving copy V' of the critic (EMA, ``target_momentum``), is lower where the critic has learned
a shorter way (stitching episodes; an episode idling at its goal). Encoded latents of every
frame, and the predicted ones, are computed once and cached (``critic_data.LatentCache``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robots.config import ConfigError
from robots.franka import rollout_states
from world_model.critic import OUTPUT_SCALE
from world_model.critic_data import CacheBatches, LatentCache, load_or_build_cache, on_device
from world_model.model import WorldModel
from world_model.train_loop import ema_update

RANK_DISTANCE = 0.03  # metres between the two actions' end positions for the full margin
RANK_GRIPPER = 0.5  # gripper difference between them for the full margin


@dataclass
class CriticSection:
    """The critic stage's settings.

    Attributes:
        hidden, use_state, max_steps: sizes of a new critic (``CriticConfig``); a model that
            already has one keeps its own.
        rollout_steps: predicted latents of 1..rollout_steps steps ahead are cached and
            trained on (the planner's horizon; 0: encoded latents only).
        predicted_fraction: share of samples whose frame is a predicted latent.
        final_goal_fraction: share whose goal is the last frame of their episode.
        negative_fraction: share whose goal is a frame of another episode.
        negative_weight: weight of the negatives' squared error.
        free_goal_tasks: tasks whose scenes differ only in the hand's pose (no object to
            move): a frame of one is not a negative for a frame of another (the hand gets
            there in a few steps).
        imagined_weight: weight of the one-step bound on imagined random actions (0: off; the
            cache then holds no random-action predictions unless ``rank_weight`` is on).
        rank_weight: weight of the ranking of the data's action over a random one (0: off;
            needs ``rollout_steps`` >= 1: the data action's 1-step prediction).
        rank_margin: the ranking's margin in steps for a random action that lands
            ``RANK_DISTANCE`` or more from where the data's action does (less: proportionally).
        target_momentum: EMA momentum of the temporal-difference target network.
        encode_batch: frames per encoder / predictor call while building the cache.
        cache_latents: keep the cache in ``out/critic_latents.pt`` (a resumed run reuses it).
    """

    hidden: int = 256
    use_state: bool = True
    max_steps: int = 64
    rollout_steps: int = 1
    predicted_fraction: float = 0.5
    final_goal_fraction: float = 0.3
    negative_fraction: float = 0.25
    negative_weight: float = 1.0
    free_goal_tasks: list[str] = field(default_factory=lambda: ["reach"])
    imagined_weight: float = 0.0
    rank_weight: float = 0.0
    rank_margin: float = 1.0
    target_momentum: float = 0.99
    encode_batch: int = 64
    cache_latents: bool = True


def check_section(section: CriticSection) -> None:
    """Raise ``ConfigError`` naming the first setting out of range."""
    fractions = (section.predicted_fraction, section.final_goal_fraction, section.negative_fraction)
    if not all(0.0 <= f <= 1.0 for f in fractions):
        raise ConfigError(f"critic fractions must be in [0, 1], got {fractions}")
    if section.final_goal_fraction + section.negative_fraction > 1.0:
        raise ConfigError("critic.final_goal_fraction + critic.negative_fraction must be <= 1")
    if section.rollout_steps < 0 or section.hidden < 1 or section.max_steps < 1:
        raise ConfigError("critic.rollout_steps must be >= 0, hidden and max_steps >= 1")
    if not 0.0 <= section.target_momentum < 1.0 or section.negative_weight < 0:
        raise ConfigError("critic.target_momentum must be in [0, 1), negative_weight >= 0")
    if section.imagined_weight < 0 or section.rank_weight < 0 or section.rank_margin < 0:
        raise ConfigError("critic.imagined_weight, rank_weight and rank_margin must be >= 0")
    if section.rank_weight > 0 and section.rollout_steps < 1:
        raise ConfigError("critic.rank_weight needs critic.rollout_steps >= 1")


class CriticSamples(CacheBatches):
    """An endless, deterministic stream of batches of (frame, steps ahead, goal, negative)
    indices into a ``LatentCache`` (``CacheBatches``: resumable, split across workers).

    Attributes:
        clips: [M] the global frame indices that batches start from (the tasks asked for).
    """

    def __init__(
        self,
        cache: LatentCache,
        section: CriticSection,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        start_item: int = 0,
        tasks: list[str] | None = None,
    ) -> None:
        super().__init__(cache, batch_size, seed, rank, start_item)
        self.section = section
        chosen = np.array([tasks is None or task in tasks for task in cache.tasks])
        if not chosen.any():
            raise ConfigError(f"no episode of the tasks {tasks} in the dataset")
        self.episodes = np.flatnonzero(chosen)
        free = np.array([task in section.free_goal_tasks for task in cache.tasks])
        self.free = free
        self.object_episodes = np.flatnonzero(chosen & ~free)
        self.clips = np.concatenate(
            [np.arange(self.first[e], self.last[e] + 1) for e in self.episodes]
        )

    def draw_item(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch: {"frame", "steps", "goal": int64 [B], "negative": bool [B]}."""
        section, size = self.section, self.batch_size
        frame = rng.choice(self.clips, size)
        episode = self.episode_of[frame]
        last = self.last[episode]
        ahead = rng.integers(1, section.rollout_steps + 1, size) if section.rollout_steps else 0
        steps = np.where(rng.random(size) < section.predicted_fraction, ahead, 0)
        steps = np.minimum(steps, last - frame)
        shown = frame + steps
        kind = rng.random(size)
        final = kind < section.final_goal_fraction
        negative = ~final & (kind < section.final_goal_fraction + section.negative_fraction)
        later = shown + np.floor(rng.random(size) * (last - shown + 1)).astype(np.int64)
        goal = np.where(final, last, later)
        for i in np.flatnonzero(negative):
            other = self._other_episode(int(episode[i]), rng)
            if other is None:  # no episode to take a negative from: a hindsight goal instead
                negative[i] = False
                continue
            end = rng.random() < 0.5
            goal[i] = (
                self.last[other] if end else rng.integers(self.first[other], self.last[other] + 1)
            )
        return {
            "frame": torch.from_numpy(frame.astype(np.int64)),
            "steps": torch.from_numpy(np.asarray(steps, dtype=np.int64)),
            "goal": torch.from_numpy(goal.astype(np.int64)),
            "negative": torch.from_numpy(negative),
        }

    def _other_episode(self, episode: int, rng: np.random.Generator) -> int | None:
        """A random episode other than ``episode`` whose frames are negatives for it."""
        pool = self.object_episodes if self.free[episode] else self.episodes
        pool = pool[pool != episode]
        return int(rng.choice(pool)) if len(pool) else None


def critic_targets(
    steps_left: torch.Tensor,
    bootstrap: torch.Tensor,
    negative: torch.Tensor,
    max_steps: float,
) -> torch.Tensor:
    """Training targets ``[B]`` in steps (see the module docstring).

    Args:
        steps_left: [B] j - p, frames from the scored frame to the goal (same episode).
        bootstrap: [B] V'(z_{p+1}, s_{p+1}, g), the target network at the next frame.
        negative: [B] bool, the goal is from another episode.
        max_steps: the target of negatives.
    """
    steps_left = steps_left.to(bootstrap.dtype)
    positive = torch.minimum(steps_left, 1.0 + bootstrap)
    positive = torch.where(steps_left <= 0, torch.zeros_like(positive), positive)
    return torch.where(negative, torch.full_like(positive, float(max_steps)), positive)


class CriticObjective:
    """Training state of the critic stage: the frozen model, its latent cache, the trainable
    ``module`` (the critic; a model without one gets a fresh one) and the EMA target copy."""

    metric_names = ("loss", "positive_mae", "negative_value", "ordered", "imagined", "ranked")

    def __init__(
        self,
        model: WorldModel,
        section: CriticSection,
        source,
        out: Path | None,
        verbose: bool = True,
        tasks: list[str] | None = None,
    ) -> None:
        """Args: model: the world model; section: ``CriticSection``; source: the dataset
        (folder or opened reader); out: the run folder (cache file), None for no file;
        tasks: cache (and train on) the episodes of these tasks only (None: all)."""
        check_section(section)
        self.model, self.section = model, section
        freeze(model.encoder, model.predictor, model.readout)
        if model.critic is None:
            model.add_critic(section.hidden, section.use_state, section.max_steps)
        cache_file = (
            out / "critic_latents.pt" if out is not None and section.cache_latents else None
        )
        self.cache = load_or_build_cache(
            model,
            source,
            section.rollout_steps,
            section.encode_batch,
            cache_file,
            verbose,
            explore=section.imagined_weight > 0 or section.rank_weight > 0,
            tasks=tasks,
        )
        model.critic.train()
        self.module = model.critic
        self.target = copy.deepcopy(model.critic).eval().requires_grad_(False)

    def stream(
        self, batch_size: int, seed: int, rank: int, start: int, tasks: list[str] | None
    ) -> CriticSamples:
        """The batches this objective trains on, from item ``start`` (resume)."""
        return CriticSamples(self.cache, self.section, batch_size, seed, rank, start, tasks)

    def inputs(self, batch: dict) -> tuple[torch.Tensor, ...]:
        """(frame latents [B, N, D] (encoded or predicted), their states [B, 7], goal latents,
        next frames' latents and states, frames left to the goal [B]) on the model's device."""
        cache, device = self.cache, self.model.device
        frame, steps, goal = batch["frame"], batch["steps"], batch["goal"]
        shown = frame + steps
        latents = cache.encoded[frame].clone()
        for ahead in range(1, cache.predicted.shape[0] + 1):
            rows = steps == ahead
            latents[rows] = cache.predicted[ahead - 1, frame[rows]]
        last = self.last_frame(shown)
        following = torch.minimum(shown + 1, last)
        return (
            on_device(latents, device),
            on_device(cache.states[shown], device),
            on_device(cache.encoded[goal], device),
            on_device(cache.encoded[following], device),
            on_device(cache.states[following], device),
            (goal - shown).to(device),
        )

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """Weighted squared error (in units of ``OUTPUT_SCALE`` steps) against the targets."""
        latents, states, goals, following, following_states, steps_left = self.inputs(batch)
        negative = batch["negative"].to(latents.device)
        with autocast():
            value = module(latents, states, goals).float()
        with torch.no_grad():
            bootstrap = self.target(following, following_states, goals).float()
        target = critic_targets(steps_left, bootstrap, negative, self.model.config.critic.max_steps)
        weight = torch.where(negative, self.section.negative_weight, 1.0)
        loss = (weight * ((value - target) / OUTPUT_SCALE).square()).mean()
        imagined = loss.new_zeros(())
        if self.section.imagined_weight > 0:
            imagined = self.imagined_bound(module, batch["frame"], goals, autocast)
            loss = loss + self.section.imagined_weight * imagined
        ranking, ranked = loss.new_zeros(()), loss.new_zeros(())
        if self.section.rank_weight > 0:
            ranking, ranked = self.ranking(module, batch["frame"], goals, negative, autocast)
            loss = loss + self.section.rank_weight * ranking
        positive = ~negative
        moving = positive & (steps_left > 0)
        return {
            "loss": loss,
            "positive_mae": _masked_mean((value - target).detach().abs(), positive),
            "negative_value": _masked_mean(value.detach(), negative),
            "ordered": _masked_mean((value > bootstrap).float(), moving),
            "imagined": imagined.detach(),
            "ranked": ranked,
        }

    def imagined_bound(
        self, module: nn.Module, frame: torch.Tensor, goals: torch.Tensor, autocast
    ) -> torch.Tensor:
        """Mean squared shortfall (in ``OUTPUT_SCALE`` units) of V on the cached random-action
        predictions from ``frame`` [B] below V'(frame) - 1 (see the module docstring)."""
        cache, device = self.cache, self.model.device
        start_state = cache.states[frame].to(device)
        moved_state = self.explored_state(frame)
        with torch.no_grad():
            start = cache.encoded[frame].to(device, torch.float32)
            floor = self.target(start, start_state, goals).float() - 1.0
        with autocast():
            explored = cache.explored[frame].to(device, torch.float32)
            value = module(explored, moved_state, goals).float()
        return ((floor - value).clamp_min(0.0) / OUTPUT_SCALE).square().mean()

    def last_frame(self, frames: torch.Tensor) -> torch.Tensor:
        """Index [B] of the last frame of each of ``frames``' [B] episodes."""
        episode = self.cache.episode_of[frames]
        return self.cache.first[episode] + self.cache.length[episode] - 1

    def explored_state(self, frame: torch.Tensor) -> torch.Tensor:
        """End-effector states [B, 7] after the cached random action from each ``frame`` [B]
        (integrated as the planner integrates its candidates)."""
        device = self.model.device
        moves = self.cache.explored_actions[frame].to(device)[:, None]  # [B, 1, 7]
        return rollout_states(self.cache.states[frame].to(device), moves)[:, -1]

    def ranking(
        self,
        module: nn.Module,
        frame: torch.Tensor,
        goals: torch.Tensor,
        negative: torch.Tensor,
        autocast,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ranking loss of the data's action over the cached random one from ``frame`` [B]
        (see the module docstring) and the share of pairs already in order, over the rows
        with a same-episode goal and a next frame.

        Returns:
            (mean squared margin violation in ``OUTPUT_SCALE`` units, share ranked, detached).
        """
        cache, device = self.cache, self.model.device
        last = self.last_frame(frame)
        rows = (~negative.cpu() & (frame < last)).to(device)
        following = torch.minimum(frame + 1, last)
        random_state = self.explored_state(frame)
        data_state = cache.states[following].to(device)
        apart = (random_state[:, :3] - data_state[:, :3]).norm(dim=-1) / RANK_DISTANCE
        apart = apart + (random_state[:, 6] - data_state[:, 6]).abs() / RANK_GRIPPER
        margin = self.section.rank_margin * apart.clamp(max=1.0)
        with autocast():
            data_value = module(
                cache.predicted[0, frame].to(device, torch.float32), data_state, goals
            ).float()
            random_value = module(
                cache.explored[frame].to(device, torch.float32), random_state, goals
            ).float()
        violation = (data_value + margin - random_value).clamp_min(0.0) / OUTPUT_SCALE
        loss = _masked_mean(violation.square(), rows)
        return loss, _masked_mean((random_value > data_value).float(), rows).detach()

    def begin_step(self, step: int) -> None:
        """Nothing to do (the samples are a function of the step)."""

    def end_step(self, step: int) -> None:
        """Move the target network toward the critic (EMA)."""
        ema_update(self.target, self.module, self.section.target_momentum)

    def extra_state(self) -> dict[str, dict]:
        return {"target": self.target.state_dict()}

    def load_extra_state(self, state: dict[str, dict]) -> None:
        self.target.load_state_dict(state["target"])

    def final_model(self) -> WorldModel:
        self.model.critic.eval()
        return self.model


def freeze(*modules: nn.Module | None) -> None:
    """Put each of ``modules`` (None: skipped) in eval mode without gradients: the parts of
    the model a head stage reads but does not train."""
    for module in modules:
        if module is not None:
            module.eval().requires_grad_(False)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` (0 when empty); differentiable (detach a logged
    figure's values)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
