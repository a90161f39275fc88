"""The end-to-end stage (``jepa-mpc train joint``): encoder and action-conditioned predictor
trained together from pixels on the paper's predictor losses (teacher forcing + rollout L1 on
layer-normed latents), plus an anti-collapse regulariser on the encoder's latents
(``world_model.regularizers``, LeWorldModel's recipe) and, optionally, a proprioceptive
readout loss that makes the latents show the end-effector state (hand position, gripper).

The architecture is the V-JEPA 2-AC one unchanged; only what is trained differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from world_model.encoder import layer_norm_latents, preprocess_images
from world_model.model import WorldModel
from world_model.regularizers import RegularizerSection, latent_std, regularizer
from world_model.train_predictor import SupervisedObjective, predictor_losses
from world_model.train_readout import readout_errors


@dataclass
class JointSection:
    """End-to-end training: the regulariser, whether targets carry gradients (LeWorldModel:
    yes, no EMA, no stop-gradient), the encoder's learning rate relative to the predictor's,
    and the weight of the state readout loss (0 = none; its gripper part weighted apart)."""

    regularizer: RegularizerSection = field(default_factory=RegularizerSection)
    target_gradients: bool = True
    encoder_lr_scale: float = 1.0
    readout_weight: float = 0.0
    gripper_readout_weight: float = 1.0


class JointModel(nn.Module):
    """Encoder + predictor (+ readout) as one trainable module (one ``forward`` for DDP)."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.predictor = model.predictor
        self.readout = model.readout
        self.img_size = model.config.img_size
        self.views = model.config.views

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> layer-normed latents [B, T, N, D], with gradients."""
        batch, length = frames.shape[:2]
        pixels = preprocess_images(frames.flatten(0, 1), self.img_size, frames.device, self.views)
        raw = self.encoder.encode_frames(pixels)
        return layer_norm_latents(raw.float()).unflatten(0, (batch, length))

    def forward(self, frames, actions, states, predictor_config, target_gradients: bool):
        """Latents [B*T, N, D], the predictor's losses on them (``PredictorSection``) and, with
        a trainable readout, its errors [B*T, 7] in the head's units (all inside ``forward``,
        as DDP wants)."""
        latents = self.encode(frames)
        targets = latents if target_gradients else latents.detach()
        terms = predictor_losses(
            self.predictor,
            targets,
            actions,
            states,
            predictor_config.rollout_steps,
            predictor_config.change_weight,
        )
        images = latents.flatten(0, 1)
        errors = None
        if self.readout is not None and self.readout.training:
            errors = readout_errors(self.readout, images, states.flatten(0, 1))
        return images, terms, errors


class JointObjective(SupervisedObjective):
    """Training state of the joint stage; the train loop calls its hooks."""

    metric_names = ("loss", "teacher_forcing", "rollout", "regularizer", "readout", "latent_std")

    def __init__(self, model: WorldModel, config: JointSection, predictor_config, seed: int):
        """Args: model: the world model (a readout is added if ``readout_weight`` > 0 and it
        has none); config: ``JointSection``; predictor_config: ``PredictorSection``."""
        self.model, self.config, self.predictor_config = model, config, predictor_config
        self.seed = seed
        if config.readout_weight > 0 and model.readout is None:
            model.add_readout()
        model.encoder.train().requires_grad_(True)
        model.predictor.train().requires_grad_(True)
        model.predictor.extrinsics_encoder.requires_grad_(False)
        if model.readout is not None:
            trained = config.readout_weight > 0
            model.readout.train(trained).requires_grad_(trained)
        self.module = JointModel(model)
        self.lr_scales = {"encoder.": config.encoder_lr_scale}
        self._generator = torch.Generator()

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """Predictor losses + weight x regulariser (+ readout_weight x readout loss)."""
        device = self.model.device
        frames = batch["frames"].to(device)
        actions = batch["actions"].to(device, torch.float32)
        states = batch["states"].to(device, torch.float32)
        with autocast():
            images, terms, errors = module(
                frames,
                actions,
                states,
                self.predictor_config,
                self.config.target_gradients,
            )
        reg = regularizer(images, self.config.regularizer, self._generator)
        loss = (
            self.predictor_config.teacher_forcing_weight * terms["teacher_forcing"]
            + self.predictor_config.rollout_weight * terms["rollout"]
            + self.config.regularizer.weight * reg
        )
        readout = images.new_zeros(())
        if errors is not None:
            weights = errors.new_ones(7)
            weights[6] = self.config.gripper_readout_weight
            readout = (errors.square() * weights).mean()
            loss = loss + self.config.readout_weight * readout
        spread = latent_std(images.detach()).mean()
        return {"loss": loss, **terms, "regularizer": reg, "readout": readout, "latent_std": spread}

    def begin_step(self, step: int) -> None:
        """Seed this step's SIGReg directions from (seed, step): a resumed run draws the same."""
        state = np.random.SeedSequence([self.seed, step]).generate_state(1)[0]
        self._generator = torch.Generator().manual_seed(int(state))
