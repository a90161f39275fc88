"""``StateWorldModel``: a world model with known dynamics whose latent is a fixed linear map of
the end-effector state. The planner's test bed and the "ground-truth-state" benchmark baseline.

The latent of a state is ``features(state) @ W``, reshaped to ``[N, D]``, where ``features`` is
a continuous 13-D embedding of the 7-D state (position relative to the workspace centre divided
by ``position_scale``, the 9 entries of the rotation matrix divided by ``rotation_scale``, and
the gripper closedness divided by ``gripper_scale``) and ``W`` a seeded Gaussian matrix. The
rotation matrix is used instead of the Euler angles because Euler angles wrap at ±pi (a hand
pointing down has roll ≈ pi), which would make the latent jump for a tiny rotation.

With ``W`` Gaussian, ``mean |z(s) - z(g)|`` is about ``sqrt(2/pi) * |f(s) - f(g)| / sqrt(13)``:
the paper's energy on this model is proportional to a weighted distance between states, so
a planner that lowers the energy really moves the hand toward the goal.

The gripper weighs heavily (``gripper_scale`` 0.05: a closedness error of 0.05, the 4 mm of
finger width that decides whether a held cube stays held, counts like 10 cm of position).
Because the distance is Euclidean in the features, a light gripper weight makes a small
gripper error vanish next to a large position error (``sqrt(d² + g²) ≈ d``), and a sampling
planner then drifts the gripper open while it carries a cube.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from robots.franka import (
    GRIPPER,
    POS,
    ROT,
    STATE_DIM,
    euler_to_matrix,
    matrix_to_euler,
    rollout_states,
)
from world_model.errors import InputShapeError

FEATURE_DIM = 13  # 3 position + 9 rotation-matrix entries + 1 gripper
WORKSPACE_CENTRE = (0.525, 0.0, 0.305)  # reference point over the table (metres); fixed


class StateWorldModel(nn.Module):
    """Latent world model with exact dynamics: ``rollout`` integrates the state analytically
    (``robots.franka.rollout_states``) and maps each state to its latent.

    Attributes:
        num_patches: tokens per frame (N). latent_dim: features per token (D).
    """

    def __init__(
        self,
        num_patches: int = 16,
        latent_dim: int = 32,
        seed: int = 0,
        position_scale: float = 0.1,
        rotation_scale: float = 1.0,
        gripper_scale: float = 0.05,
    ) -> None:
        """Args:
        num_patches, latent_dim: latent shape [N, D].
        seed: seeds the projection matrix (the same seed gives the same model anywhere).
        position_scale: metres per feature unit (0.1: 1 cm moves the feature by 0.1).
        rotation_scale, gripper_scale: likewise for rotation-matrix entries and the gripper
            closedness (see the module docstring for why the gripper weighs heavily).
        """
        super().__init__()
        if num_patches < 1 or latent_dim < 1:
            raise InputShapeError(
                f"latent shape must be positive, got [{num_patches}, {latent_dim}]"
            )
        self.num_patches = num_patches
        self.latent_dim = latent_dim
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(FEATURE_DIM, num_patches * latent_dim, generator=generator)
        # Unit-variance features give latents of unit scale.
        self.register_buffer("projection", projection / FEATURE_DIM**0.5)
        self.register_buffer("centre", torch.tensor(WORKSPACE_CENTRE))
        self.register_buffer(
            "feature_scale",
            torch.tensor([position_scale] * 3 + [rotation_scale] * 9 + [gripper_scale]),
        )

    @property
    def device(self) -> torch.device:
        """Device of the projection matrix."""
        return self.projection.device

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """End-effector states [..., 7] -> continuous features [..., 13] (see module docstring)."""
        rotation = euler_to_matrix(states[..., ROT]).flatten(-2)
        raw = torch.cat(
            (states[..., POS] - self.centre, rotation, states[..., GRIPPER : GRIPPER + 1]), dim=-1
        )
        return raw / self.feature_scale

    def latents(self, states: torch.Tensor) -> torch.Tensor:
        """End-effector states [..., 7] -> latents [..., N, D]."""
        flat = self.features(states) @ self.projection
        return flat.unflatten(-1, (self.num_patches, self.latent_dim))

    def encode(
        self, images: np.ndarray | torch.Tensor | None, states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latents of the given end-effector states; the images are ignored.

        Args:
            images: camera images (unused: this model sees the state, not the pixels).
            states: [B, 7] or [7] end-effector states (numpy or torch).

        Returns:
            [B, N, D] float32 latents on the model's device.
        """
        if states is None:
            raise InputShapeError(
                "StateWorldModel encodes the end-effector state, not pixels: pass states=[B, 7] "
                "(for a goal, give the goal state alongside the goal image)"
            )
        states = torch.as_tensor(states, dtype=torch.float32, device=self.device)
        if states.ndim == 1:
            states = states.unsqueeze(0)
        if states.ndim != 2 or states.shape[-1] != STATE_DIM:
            raise InputShapeError(f"states must be [B, 7] or [7], got {tuple(states.shape)}")
        if not bool(torch.isfinite(states).all()):
            raise InputShapeError("states contain NaN or inf")
        return self.latents(states)

    def read_state(self, latents: torch.Tensor) -> torch.Tensor:
        """The states [B, 7] whose latents are ``latents [B, N, D]`` (exact: the projection's
        pseudo-inverse recovers the features; this model's perfect "readout head").

        Raises:
            InputShapeError: ``latents`` is not [B, N, D].
        """
        if latents.ndim != 3 or tuple(latents.shape[1:]) != (self.num_patches, self.latent_dim):
            raise InputShapeError(
                f"latents must be [B, {self.num_patches}, {self.latent_dim}], "
                f"got {tuple(latents.shape)}"
            )
        flat = latents.to(self.device, torch.float32).flatten(1)
        features = flat @ torch.linalg.pinv(self.projection) * self.feature_scale  # [B, 13]
        rotation = features[:, 3:12].unflatten(-1, (3, 3))
        position = features[:, :3] + self.centre
        return torch.cat((position, matrix_to_euler(rotation), features[:, 12:]), dim=-1)

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Latents of frames 1..H under ``actions`` (exact dynamics, differentiable).

        Args:
            z0: [B, N, D] current latents (unused: the state ``s0`` determines them).
            s0: [B, 7] current end-effector states.
            actions: [B, H, 7] delta actions. ``s0`` or ``actions`` may have batch 1.

        Returns:
            [B, H, N, D] predicted latents.
        """
        if actions.ndim != 3 or actions.shape[-1] != STATE_DIM or actions.shape[1] < 1:
            raise InputShapeError(f"actions must be [B, H>=1, 7], got {tuple(actions.shape)}")
        if s0.ndim != 2 or s0.shape[-1] != STATE_DIM:
            raise InputShapeError(f"s0 must be [B, 7], got {tuple(s0.shape)}")
        if z0.ndim != 3 or tuple(z0.shape[1:]) != (self.num_patches, self.latent_dim):
            raise InputShapeError(
                f"z0 must be [B, {self.num_patches}, {self.latent_dim}], got {tuple(z0.shape)}"
            )
        batch = max(s0.shape[0], actions.shape[0])
        state = s0.to(self.device, torch.float32).expand(batch, -1)
        actions = actions.to(self.device, torch.float32).expand(batch, -1, -1)
        return self.latents(rollout_states(state, actions))
