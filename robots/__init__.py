"""The Franka Panda as the rest of the stack sees it: state/action layout, pose algebra, limits
and the safety filter (``robots.franka``), plus typed YAML config loading (``robots.config``)."""

from robots.franka import (
    ACTION_DIM,
    STATE_DIM,
    FrankaLimits,
    PoseError,
    SafetyFilter,
    StepLimits,
    Workspace,
    integrate_pose,
    pose_delta,
    rollout_states,
)

__all__ = [
    "ACTION_DIM",
    "STATE_DIM",
    "FrankaLimits",
    "PoseError",
    "SafetyFilter",
    "StepLimits",
    "Workspace",
    "integrate_pose",
    "pose_delta",
    "rollout_states",
]
