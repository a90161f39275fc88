"""A state readout: the end-effector state ``[7]`` that a frame's latent shows.

Not in the V-JEPA 2-AC release. Its use is the goal side of planning: the planner knows the
robot's current state and integrates it along a candidate plan exactly, but a goal is only an
image. Reading the goal image's gripper closedness off its latent lets the energy compare the
plan's final gripper with the goal's, which a small predictor trained on little data does not
do by itself (``docs/sim_small.md``). It is trained on frozen encoder latents with a supervised
squared-error loss (``jepa-mpc train readout``, ``world_model.train_readout``).

The head maps each token through an MLP, pools the tokens (max and mean) and maps the result
to the state, in fixed units (``STATE_CENTER``, ``STATE_SCALE``) so that every dimension weighs
about the same in the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from world_model.config import WorldModelConfig

# Output units: state = center + scale * output. Positions around the workspace centre in
# 10 cm units, angles in 0.5 rad, gripper closedness in 0.25.
STATE_CENTER = (0.475, 0.0, 0.23, 0.0, 0.0, 0.0, 0.5)
STATE_SCALE = (0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.25)


class StateReadout(nn.Module):
    """Latents ``[B, N, D]`` of one frame -> end-effector state ``[B, 7]``.

    Each token (plus a learned position embedding) goes through an MLP; the tokens' max and
    mean are concatenated and mapped to the state. The max matters: the fingers are one or two
    tokens wherever the hand is, and a mean over 64 tokens washes them out (an attention-pooled
    head trained with L1 read every goal image's gripper as open).
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        dim, hidden = config.encoder.embed_dim, config.readout.hidden
        self.position = nn.Parameter(torch.zeros(config.num_patches, dim))
        self.tokens = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, len(STATE_CENTER))
        )

    def normalized(self, latents: torch.Tensor) -> torch.Tensor:
        """The state in the head's units ``[B, 7]`` (what the training loss compares)."""
        tokens = self.tokens(latents + self.position)  # [B, N, hidden]
        pooled = torch.cat((tokens.amax(dim=1), tokens.mean(dim=1)), dim=-1)
        return self.head(pooled)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, N, D] (layer-normed, as ``WorldModel.encode`` returns) -> states [B, 7]."""
        center, scale = _units(latents)
        return center + scale * self.normalized(latents)


def _units(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(STATE_CENTER, STATE_SCALE) as tensors on ``like``'s device and dtype."""
    return like.new_tensor(STATE_CENTER), like.new_tensor(STATE_SCALE)


def init_readout(readout: StateReadout) -> None:
    """Release-style init for the linear layers (truncated normal std 0.02, zero bias)."""
    for module in readout.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
