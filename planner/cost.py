"""The cost module: the energy the actors minimise. Its intrinsic part is by default the
paper's mean |ẑ_H - z_goal| over the final predicted frame's tokens and features, with optional
action-size, path, workspace and goal-readout terms; its trainable part is the world model's
critic, a learned cost-to-go from the end of the imagined rollout to the goal (opt-in)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from planner.config import CostConfig
from robots.franka import POS, ROT, rollout_states, wrap_angle

# (final latents [S, N, D], final states [S, 7], goal latents [1 or S, N, D]) -> steps [S]
CostToGo = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Cost:
    """Energy of candidate action sequences (lower is better), one value per sequence.

    Terms, each multiplied by its weight in ``CostConfig`` and summed:
      goal       mean |ẑ_H - z_goal| over the N x D elements of the last frame (paper);
                 with ``distance: l2`` the root mean square of ẑ_H - z_goal instead; with
                 ``view_weights`` the views' means weighted (multi-view models).
      path       the same distance averaged over all predicted frames 1..H (pulls the
                 intermediate frames toward the goal too: shorter, more direct motions).
      action     mean over the horizon of the L1 norm of each 7-D action (prefers small steps).
      workspace  metres by which the integrated end-effector positions leave the workspace
                 box, summed over the horizon (keeps plans inside the reachable table top).
      readout    sum over state dimensions of weight x |s_H - ŝ_goal|: the final state
                 integrated from the current one along the actions, against the goal state
                 that the world model's readout head reads off the goal latent (angles
                 wrapped to [-pi, pi]). The goal's gripper closedness is what a small
                 predictor's latent misses (``docs/sim_small.md``).
      critic     the world model's cost-to-go (control steps, >= 0) from the final predicted
                 latent ẑ_H and the final integrated state s_H to the goal latent: what the
                 horizon does not see (``world_model.critic``; the trainable part).
    """

    def __init__(self, config: CostConfig | None = None, critic: CostToGo | None = None) -> None:
        """Args: config: the terms' weights; critic: the cost-to-go (e.g. the world model's
        ``cost_to_go``), needed only when ``config.critic_weight`` > 0."""
        self.config = config or CostConfig()
        if self.config.uses_critic and critic is None:
            raise ValueError("cost.critic_weight is set but no critic was given to the cost")
        self.critic = critic
        weights = self.config.view_weights  # normalised once: the hot path only multiplies
        self._view_scale = None if weights is None else torch.tensor(weights) / sum(weights)

    def __call__(
        self,
        predicted: torch.Tensor,
        goal_latent: torch.Tensor,
        actions: torch.Tensor,
        start_state: torch.Tensor,
        goal_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Energies of S sequences.

        Args:
            predicted: [S, H, N, D] predicted latents of frames 1..H.
            goal_latent: [1, N, D] or [S, N, D] goal latents.
            actions: [S, H, 7] the action sequences that produced ``predicted``.
            start_state: [1, 7] or [S, 7] end-effector state before the first action.
            goal_state: [1, 7] the goal state read off the goal latent; needed (only) when
                ``config.readout_weights`` has a non-zero weight.

        Returns:
            [S] energies (differentiable).
        """
        config = self.config
        distance = self.latent_distance(predicted, goal_latent)  # [S, H]
        energy = config.goal_weight * distance[:, -1]
        if config.path_weight:
            energy = energy + config.path_weight * distance.mean(dim=1)
        if config.action_weight:
            energy = energy + config.action_weight * actions.abs().sum(-1).mean(-1)
        if config.workspace_weight:
            energy = energy + config.workspace_weight * self.workspace_violation(
                start_state, actions
            )
        if config.uses_readout:
            if goal_state is None:
                raise ValueError("cost.readout_weights are set but no goal state was read")
            energy = energy + self.readout_error(start_state, actions, goal_state)
        if config.uses_critic:
            energy = energy + config.critic_weight * self.cost_to_go(
                predicted, goal_latent, actions, start_state
            )
        return energy

    def latent_distance(self, predicted: torch.Tensor, goal_latent: torch.Tensor) -> torch.Tensor:
        """Distance [S, H] of each predicted frame [S, H, N, D] from the goal [1 or S, N, D]:
        the mean over tokens of |difference| (``l1``) or of its square, rooted (``l2``); with
        ``view_weights`` the views' means (N = views x tokens per view) weighted."""
        difference = predicted - goal_latent.unsqueeze(1)
        per_element = difference.square() if self.config.distance == "l2" else difference.abs()
        if self._view_scale is None:
            mean = per_element.mean(dim=(-2, -1))
        else:
            scale = self._view_scale.to(per_element.device, per_element.dtype)
            views = per_element.unflatten(-2, (len(scale), -1)).mean(dim=(-2, -1))  # [S, H, V]
            mean = (views * scale).sum(dim=-1)
        return mean.sqrt() if self.config.distance == "l2" else mean

    def cost_to_go(
        self,
        predicted: torch.Tensor,
        goal_latent: torch.Tensor,
        actions: torch.Tensor,
        start_state: torch.Tensor,
    ) -> torch.Tensor:
        """The critic's steps-to-goal from the end of each imagined rollout.

        Args:
            predicted: [S, H, N, D]; goal_latent: [1 or S, N, D]; actions: [S, H, 7];
            start_state: [1, 7] or [S, 7].

        Returns:
            [S] steps (weight not included).
        """
        start = start_state.to(actions.dtype).expand(actions.shape[0], -1)
        final_state = rollout_states(start, actions)[:, -1]  # [S, 7]
        return self.critic(predicted[:, -1], final_state, goal_latent)

    def readout_error(
        self, start_state: torch.Tensor, actions: torch.Tensor, goal_state: torch.Tensor
    ) -> torch.Tensor:
        """Weighted |s_H - goal_state| summed over the 7 dimensions.

        Args:
            start_state: [1, 7] or [S, 7]; actions: [S, H, 7]; goal_state: [1, 7] or [S, 7].

        Returns:
            [S] the readout term (weights included).
        """
        start = start_state.to(actions.dtype).expand(actions.shape[0], -1)
        final = rollout_states(start, actions)[:, -1]  # [S, 7]
        difference = final - goal_state.to(final)
        difference = torch.cat(
            (difference[:, POS], wrap_angle(difference[:, ROT]), difference[:, 6:]), dim=1
        )
        weights = difference.new_tensor(self.config.readout_weights)
        return (difference.abs() * weights).sum(dim=-1)

    def workspace_violation(self, start_state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Metres outside the workspace box, summed over the horizon.

        Args:
            start_state: [1, 7] or [S, 7]; actions: [S, H, 7].

        Returns:
            [S] total distance of the integrated positions from the box (0 when inside).
        """
        start = start_state.to(actions.dtype).expand(actions.shape[0], -1)
        positions = rollout_states(start, actions)[..., POS]
        outside = positions - self.config.workspace.clamp(positions)
        return outside.norm(dim=-1).sum(dim=-1)
