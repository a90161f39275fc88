"""The critic: a goal-conditioned cost-to-go V(z, s, z_goal) >= 0, in control steps.

Not in the V-JEPA 2-AC release. Its use is the cost module's second half: the latent energy
(the intrinsic cost) is flat far from the goal and a planner with a 1-2 step horizon stalls;
the critic estimates how many steps the data needed from a frame like z to one like z_goal,
so the planner can rank the end of its short imagined rollout by what lies beyond it. It is
trained on the frozen model's encoded *and predicted* latents (``jepa-mpc train critic``,
``world_model.train_critic``), so it scores what the planner imagines.

Shape: each token of the frame, beside the goal's token at the same place and their difference
(the comparison the latent energy makes, but learned), goes through one MLP with a learned
position embedding; the tokens are pooled by max and mean (as the state readout does: the
fingers are one or two tokens). The head reads the pooled features and (``use_state``) the
scored frame's end-effector state; a softplus keeps the output >= 0.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from world_model.config import WorldModelConfig
from world_model.readout import STATE_CENTER, STATE_SCALE

STATE_FEATURES = 10  # 3 scaled positions, sin and cos of the 3 angles, scaled gripper
OUTPUT_SCALE = 10.0  # steps per unit of the head's output (keeps the head's numbers near 1)


def state_features(states: torch.Tensor) -> torch.Tensor:
    """End-effector states ``[B, 7]`` -> ``[B, 10]`` features of unit scale: position and
    gripper in the readout's units, angles as sine and cosine (no jump at +-pi, where a hand
    pointing down has its roll)."""
    center = states.new_tensor(STATE_CENTER)
    scale = states.new_tensor(STATE_SCALE)
    angles = states[:, 3:6]
    return torch.cat(
        (
            (states[:, :3] - center[:3]) / scale[:3],
            angles.sin(),
            angles.cos(),
            (states[:, 6:] - center[6:]) / scale[6:],
        ),
        dim=-1,
    )


class Critic(nn.Module):
    """(latents ``[B, N, D]``, states ``[B, 7]``, goal latents ``[B or 1, N, D]``) -> cost-to-go
    ``[B]`` in control steps (>= 0)."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        dim, hidden = config.encoder.embed_dim, config.critic.hidden
        self.use_state = config.critic.use_state
        self.pair = nn.Linear(3 * dim, hidden)
        self.position = nn.Parameter(torch.zeros(config.num_patches, hidden))
        self.tokens = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        inputs = 2 * hidden + (STATE_FEATURES if self.use_state else 0)
        self.head = nn.Sequential(
            nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.out = nn.Linear(hidden, 1)

    def features(self, latents: torch.Tensor, goal_latents: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, 2 * hidden]`` of each frame's tokens beside the goal's tokens
        at the same place (frame, goal, difference), by max and mean over the places."""
        goal = goal_latents.expand_as(latents)
        pairs = torch.cat((latents, goal, latents - goal), dim=-1)  # [B, N, 3D]
        tokens = self.tokens(self.pair(pairs) + self.position)  # [B, N, hidden]
        return torch.cat((tokens.amax(dim=1), tokens.mean(dim=1)), dim=-1)

    def forward(
        self, latents: torch.Tensor, states: torch.Tensor | None, goal_latents: torch.Tensor
    ) -> torch.Tensor:
        """Cost-to-go ``[B]`` (steps) from frames ``latents`` [B, N, D] (layer-normed, encoded
        or predicted) in ``states`` [B, 7] to the goals ``goal_latents`` [B or 1, N, D]."""
        parts = [self.features(latents, goal_latents)]
        if self.use_state:
            if states is None:
                raise ValueError("this critic reads the end-effector state: pass states [B, 7]")
            parts.append(state_features(states.to(parts[0].dtype)))
        hidden = self.head(torch.cat(parts, dim=-1))
        return OUTPUT_SCALE * functional.softplus(self.out(hidden).squeeze(-1))


def init_critic(critic: Critic) -> None:
    """Fresh weights: PyTorch's default (He-uniform) init for the linear layers and a zero
    position embedding. Measured on toy data, the release's truncated normal (std 0.02) left
    the 5-layer head learning about 3x slower."""
    for module in critic.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    nn.init.zeros_(critic.position)
