"""The paper's objective for the action-conditioned predictor, on a frozen encoder:
teacher-forcing L1 over all frames plus a rollout L1 where the predictor consumes its own
layer-normed predictions (gradients flow through the recurrent steps, as in the release)."""

from __future__ import annotations

import torch
from torch import nn

from world_model.encoder import layer_norm_latents
from world_model.model import WorldModel


def encode_clips(model: WorldModel, frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> layer-normed latents [B, T, N, D] (frozen encoder, no grad)."""
    batch, length = frames.shape[:2]
    return model.encode(frames.flatten(0, 1)).unflatten(0, (batch, length))


def change_weights(latents: torch.Tensor, change_weight: float) -> torch.Tensor | None:
    """Per-token loss weights [B, T-1, N] for the targets of frames 1..T-1: 1 + ``change_weight``
    x (how much the token changed from the previous frame, over its batch mean), detached;
    None when ``change_weight`` is 0 (plain L1).

    Why: the hand's fingers cover one or two of sim-small's 64 patches, so a plain mean over
    tokens lets the predictor ignore the gripper closing (``scripts/probe_gripper.py``);
    weighting by change puts the loss where the scene moves (hand, fingers, cube).
    """
    if change_weight == 0:
        return None
    change = (latents[:, 1:] - latents[:, :-1]).detach().abs().mean(-1)  # [B, T-1, N]
    return 1.0 + change_weight * change / change.mean().clamp_min(1e-8)


def weighted_l1(error: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean |error| [B, t, N, D], tokens weighted by ``weights`` [B, t, N] (None: plain)."""
    per_token = error.abs().mean(-1)
    if weights is None:
        return per_token.mean()
    return (per_token * weights).sum() / weights.sum()


def predictor_losses(
    predictor: nn.Module,
    latents: torch.Tensor,
    actions: torch.Tensor,
    states: torch.Tensor,
    rollout_steps: int,
    change_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Teacher-forcing and rollout L1 losses (tokens weighted by ``change_weights``).

    Args:
        predictor: ``ACPredictor`` (or its DDP wrapper): (latents, actions, states) [B, t, ...]
            -> raw predictions [B, t, N, D] of the next frames.
        latents: [B, T, N, D] layer-normed targets. actions, states: [B, T, 7] (action i takes
            frame i to frame i+1; the last one is unused).
        rollout_steps: frames predicted autoregressively from frame 0 (1 = the teacher-forced
            first prediction only; the paper uses 2, i.e. one recurrent step).
        change_weight: 0 = the paper's plain L1; > 0 see ``change_weights``.

    Returns:
        {"teacher_forcing": scalar, "rollout": scalar}.
    """
    length = latents.shape[1]
    if not 1 <= rollout_steps < length:
        raise ValueError(
            f"rollout_steps {rollout_steps} must be in [1, clip_len - 1 = {length - 1}]"
        )
    predicted = layer_norm_latents(
        predictor(latents[:, :-1], actions[:, :-1], states[:, :-1]).float()
    )
    weights = change_weights(latents, change_weight)
    teacher_forcing = weighted_l1(predicted - latents[:, 1:], weights)
    sequence = [latents[:, :1], predicted[:, :1]]
    for step in range(1, rollout_steps):
        inputs = torch.cat(sequence, dim=1)
        raw = predictor(inputs, actions[:, : step + 1], states[:, : step + 1])[:, -1:]
        sequence.append(layer_norm_latents(raw.float()))
    imagined = torch.cat(sequence[1:], dim=1)
    rollout_weights = None if weights is None else weights[:, :rollout_steps]
    rollout = weighted_l1(imagined - latents[:, 1 : rollout_steps + 1], rollout_weights)
    return {"teacher_forcing": teacher_forcing, "rollout": rollout}


class SupervisedObjective:
    """The hooks of an objective on a frozen encoder with no randomness, no EMA and no state
    beyond its module's weights (the train loop calls them); subclasses set ``model``,
    ``module``, ``metric_names`` and ``losses``."""

    model: WorldModel

    def begin_step(self, step: int) -> None:
        """Nothing to do (no randomness in this objective)."""

    def end_step(self, step: int) -> None:
        """Nothing to do (no EMA)."""

    def extra_state(self) -> dict[str, dict]:
        return {}

    def load_extra_state(self, state: dict[str, dict]) -> None:
        """Nothing beyond the module's weights."""

    def final_model(self) -> WorldModel:
        return self.model


class PredictorObjective(SupervisedObjective):
    """Training state of the predictor stage: the frozen encoder, the trainable ``module``
    (the predictor; its unused ``extrinsics_encoder`` is frozen so DDP sees no idle weights)."""

    metric_names = ("loss", "teacher_forcing", "rollout")

    def __init__(self, model: WorldModel, config) -> None:
        """Args: model: the world model; config: ``PredictorSection``."""
        self.model, self.config = model, config
        model.encoder.eval().requires_grad_(False)
        model.predictor.train()
        model.predictor.extrinsics_encoder.requires_grad_(False)
        self.module = model.predictor

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """Weighted sum of the teacher-forcing and rollout losses on one batch of clips."""
        device = self.model.device
        latents = encode_clips(self.model, batch["frames"].to(device))
        actions = batch["actions"].to(device, torch.float32)
        states = batch["states"].to(device, torch.float32)
        with autocast():
            terms = predictor_losses(
                module,
                latents,
                actions,
                states,
                self.config.rollout_steps,
                self.config.change_weight,
            )
        loss = (
            self.config.teacher_forcing_weight * terms["teacher_forcing"]
            + self.config.rollout_weight * terms["rollout"]
        )
        return {"loss": loss, **terms}
