"""The subgoal generator: a goal-conditioned latent proposer z_{t+k} = G(z_t, s_t, z_goal, k).

Not in the V-JEPA 2-AC release. Its use is the planner's hierarchical mode (issue #15): from
one goal image the latent energy is flat and a 1-2 step search stalls, but an energy toward a
frame k steps ahead is not. G reads the current frame's latent, its end-effector state and the
final goal's latent and writes the latent the data showed k control steps later on its way to
that goal (hindsight goals of successful episodes; ``jepa-mpc train subgoals``,
``world_model.train_subgoals``). The planner re-proposes it at every step (a carrot k steps
ahead) and its search minimises the usual energy toward it; the stage structure of a task
(over the cube, open around it, closed, lifted, carried, released) is the data's, read off the
current and goal latents, not a hand-written schedule.

Shape: each token of the frame beside the goal's token at the same place and their difference
(as the critic compares them) is embedded with a learned position embedding; one more token
carries the state and k. A small pre-norm transformer mixes them (where the cube is relative
to the hand is a relation between tokens), and each frame token's output is added to the
frame's latent (the subgoal starts as "nothing changes"), then layer-normed without
parameters as the encoder's latents are. The state token's output is the subgoal's
end-effector position and gripper, as a change from the current state in the readout's units
(``SUBGOAL_STATE``): a precise target for the planner's readout term, and a supervised signal
that makes the generator localise the cube.
"""

from __future__ import annotations

import torch
from torch import nn

from world_model.config import WorldModelConfig
from world_model.critic import STATE_FEATURES, state_features
from world_model.encoder import layer_norm_latents
from world_model.readout import STATE_SCALE

SUBGOAL_STATE = (0, 1, 2, 6)  # the state dimensions the generator proposes: x, y, z, gripper


def state_scale(like: torch.Tensor) -> torch.Tensor:
    """[4] the readout's units of the proposed dimensions, on ``like``'s device and dtype."""
    return like.new_tensor([STATE_SCALE[i] for i in SUBGOAL_STATE])


class SubgoalGenerator(nn.Module):
    """(latents ``[B, N, D]``, states ``[B, 7]``, goal latents ``[B or 1, N, D]``, steps
    ahead ``[B]`` or an int) -> (subgoal latents ``[B, N, D]`` (layer-normed), subgoal states
    ``[B, 7]``: x, y, z and gripper proposed, the angles kept)."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        section = config.subgoals
        dim, width = config.encoder.embed_dim, section.hidden
        self.max_ahead = section.max_ahead
        self.pair = nn.Linear(3 * dim, width)
        self.position = nn.Parameter(torch.zeros(config.num_patches, width))
        self.state = nn.Linear(STATE_FEATURES, width)
        self.ahead = nn.Embedding(section.max_ahead + 1, width)
        layer = nn.TransformerEncoderLayer(
            width,
            section.heads,
            dim_feedforward=2 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.mixer = nn.TransformerEncoder(layer, section.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        self.state_out = nn.Linear(width, len(SUBGOAL_STATE))

    def forward(
        self,
        latents: torch.Tensor,
        states: torch.Tensor,
        goal_latents: torch.Tensor,
        ahead: torch.Tensor | int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Subgoal latents [B, N, D], subgoal states [B, 7]): the frame ``ahead`` steps
        (1..max_ahead) after ``latents`` [B, N, D] in ``states`` [B, 7] on the way to
        ``goal_latents``, and the end-effector state it shows."""
        batch = latents.shape[0]
        goal = goal_latents.expand_as(latents)
        tokens = self.pair(torch.cat((latents, goal, latents - goal), dim=-1)) + self.position
        if isinstance(ahead, int):
            ahead = torch.full((batch,), ahead, dtype=torch.long, device=latents.device)
        ahead = ahead.clamp(1, self.max_ahead)
        extra = self.state(state_features(states.to(tokens.dtype))) + self.ahead(ahead)
        mixed = self.norm(self.mixer(torch.cat((extra[:, None], tokens), dim=1)))
        subgoal = layer_norm_latents(latents + self.out(mixed[:, 1:]))
        moved = states.to(mixed.dtype).clone()
        moved[:, list(SUBGOAL_STATE)] += self.state_out(mixed[:, 0]) * state_scale(moved)
        return subgoal, moved


def init_subgoals(generator: SubgoalGenerator) -> None:
    """Fresh weights: PyTorch's defaults for the layers, a zero position embedding and a zero
    output layers (the untrained generator proposes the current frame and state)."""
    for module in generator.modules():
        if isinstance(module, nn.Linear | nn.LayerNorm | nn.Embedding):
            module.reset_parameters()
    nn.init.zeros_(generator.position)
    nn.init.zeros_(generator.out.weight)
    nn.init.zeros_(generator.out.bias)
    nn.init.zeros_(generator.state_out.weight)
    nn.init.zeros_(generator.state_out.bias)
