"""The readout stage: a supervised least-squares fit of the state readout head
(``world_model.readout``) on the frozen encoder's latents; encoder and predictor stay as they
are."""

from __future__ import annotations

import torch
from torch import nn

from robots.franka import POS, ROT, wrap_angle
from world_model.model import WorldModel
from world_model.readout import STATE_SCALE
from world_model.train_predictor import SupervisedObjective, encode_clips


class ReadoutObjective(SupervisedObjective):
    """Training state of the readout stage. A model without a readout gets a fresh one."""

    metric_names = ("loss", "position_mae", "gripper_mae")

    def __init__(self, model: WorldModel) -> None:
        self.model = model
        model.encoder.eval().requires_grad_(False)
        model.predictor.eval().requires_grad_(False)
        if model.readout is None:
            model.add_readout()
        model.readout.train()
        self.module = model.readout

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """Mean squared error in the head's units on every frame of the batch's clips (a
        median-seeking L1 read the rare closed gripper as open), plus the mean absolute
        position error (m) and gripper closedness error for the log."""
        device = self.model.device
        latents = encode_clips(self.model, batch["frames"].to(device)).flatten(0, 1)
        states = batch["states"].to(device, torch.float32).flatten(0, 1)
        with autocast():
            scaled = readout_errors(module, latents, states)
        error = scaled * scaled.new_tensor(STATE_SCALE)
        return {
            "loss": scaled.square().mean(),
            "position_mae": error[:, :3].mean().detach(),
            "gripper_mae": error[:, 6].mean().detach(),
        }


def readout_errors(head: nn.Module, latents: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """|read state - true state| in the head's units (``STATE_SCALE``) ``[B, 7]``, angle
    errors wrapped to [-pi, pi] (a hand pointing down has roll near +pi or -pi, the same pose).

    Args:
        head: the ``StateReadout``; latents: [B, N, D] layer-normed; states: [B, 7] true.
    """
    difference = head(latents).float() - states
    wrapped = wrap_angle(difference[:, ROT])
    error = torch.cat((difference[:, POS], wrapped, difference[:, 6:]), dim=1).abs()
    return error / error.new_tensor(STATE_SCALE)
