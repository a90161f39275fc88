"""The world-model interface the planner relies on (structural: any object with these members
works, e.g. ``world_model.WorldModel`` or ``world_model.state_model.StateWorldModel``), and the
optional state readout that the cost's goal-readout term needs."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class LatentWorldModel(Protocol):
    """Encoder + action-conditioned predictor as the planner sees them.

    Attributes:
        num_patches: tokens per frame (N). latent_dim: features per token (D).
    """

    num_patches: int
    latent_dim: int

    def encode(self, images: Any, states: Any = None) -> torch.Tensor:
        """uint8 RGB images [B, H, W, 3] or [H, W, 3] (+ states [B, 7]) -> latents [B, N, D]."""
        ...

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z0 [B, N, D], s0 [B, 7], actions [B, H, 7] -> latents of frames 1..H [B, H, N, D];
        differentiable with respect to ``actions``."""
        ...


@runtime_checkable
class ReadoutWorldModel(LatentWorldModel, Protocol):
    """A ``LatentWorldModel`` that can also read the end-effector state off a latent (a model
    may have the method but no trained head: ``WorldModel.readout`` is then None)."""

    def read_state(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, N, D] -> end-effector states [B, 7] that they show."""
        ...


def model_device(model: LatentWorldModel) -> torch.device:
    """The device a world model computes on (its parameters' or buffers', else CPU)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return torch.device("cpu")


def model_views(model: LatentWorldModel) -> int:
    """Camera views per image the world model takes (``config.views``; 1 for a model without
    a config, such as the ground-truth-state model)."""
    return int(getattr(getattr(model, "config", None), "views", 1))


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same, with an unset CUDA index meaning the current one
    (``cuda`` and ``cuda:0`` are the same device on a one-GPU machine)."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True

    def index(device: torch.device) -> int:
        return torch.cuda.current_device() if device.index is None else device.index

    return index(a) == index(b)
