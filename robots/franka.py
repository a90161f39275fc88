"""What is true of the Franka Panda anywhere: joint limits, the table-top workspace, the 7-D
end-effector state/action layout, batched pose algebra in torch, and the safety filter.

Layout (DROID / V-JEPA 2-AC): state = [x, y, z, roll, pitch, yaw, gripper] in the robot base
frame (metres; radians, extrinsic xyz Euler, i.e. R = Rz(yaw) @ Ry(pitch) @ Rx(roll); gripper
closedness 0 = open .. 1 = closed). An action is the delta of the same seven numbers, with the
rotation part being euler(R_next @ R_currentᵀ), so that R_next = R(delta) @ R_current.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

STATE_DIM = 7
ACTION_DIM = 7
POS = slice(0, 3)
ROT = slice(3, 6)
GRIPPER = 6
STATE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")

# Panda joint limits (rad), from Franka's datasheet; the two finger joints (m) follow.
JOINT_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
JOINT_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
FINGER_RANGE = (0.0, 0.04)
# A comfortable "ready" pose with the hand pointing down over the table.
HOME_QPOS = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785)


class PoseError(ValueError):
    """An end-effector state or action that is malformed (wrong shape, NaN, infinite)."""


@dataclass(frozen=True)
class Workspace:
    """Axis-aligned box (robot base frame, metres) the end effector must stay inside.

    The default is a box the Panda reaches with the hand pointing down (the tasks' pose): on a
    6 x 6 x 6 grid over it, MuJoCo IK places the sim's TCP within 8 mm of every point
    (``tests/test_sim_env.py``). A box reaching further (x 0.80, z 0.60) had corners 30 cm out
    of reach, where the arm lagged its commands by up to 13 cm.
    """

    lower: tuple[float, float, float] = (0.30, -0.30, 0.01)
    upper: tuple[float, float, float] = (0.65, 0.30, 0.45)

    def contains(self, position: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        """Whether each position [..., 3] lies inside the box; returns a bool tensor [...]."""
        lower = position.new_tensor(self.lower) - atol
        upper = position.new_tensor(self.upper) + atol
        return ((position >= lower) & (position <= upper)).all(dim=-1)

    def clamp(self, position: torch.Tensor) -> torch.Tensor:
        """Project positions [..., 3] onto the box."""
        return torch.maximum(
            torch.minimum(position, position.new_tensor(self.upper)),
            position.new_tensor(self.lower),
        )


@dataclass(frozen=True)
class StepLimits:
    """Largest change one control step may command."""

    translation: float = 0.05  # metres, Euclidean norm of the xyz delta
    rotation: float = 0.25  # radians, angle of the delta rotation
    gripper: float = 1.0  # closedness units


@dataclass(frozen=True)
class SpeedLimits:
    """Fastest the end effector can move: the Panda's Cartesian limits (Franka datasheet:
    1.7 m/s, 2.5 rad/s), plus the measurement noise allowed on top. A measured pose that moved
    further than this since the previous one is not the arm's (``planner_ros`` rejects it)."""

    translation: float = 1.7  # m/s
    rotation: float = 2.5  # rad/s
    noise_translation: float = 0.01  # m
    noise_rotation: float = 0.05  # rad


@dataclass(frozen=True)
class FrankaLimits:
    """Everything the safety filter enforces, and how fast the arm can really move."""

    workspace: Workspace = field(default_factory=Workspace)
    step: StepLimits = field(default_factory=StepLimits)
    speed: SpeedLimits = field(default_factory=SpeedLimits)


# ---------------------------------------------------------------------------------------------
# Rotation helpers (batched, differentiable where it matters)
# ---------------------------------------------------------------------------------------------


def euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """Extrinsic xyz Euler angles [..., 3] (roll, pitch, yaw) -> rotation matrices [..., 3, 3]."""
    roll, pitch, yaw = euler.unbind(-1)
    cr, sr = torch.cos(roll), torch.sin(roll)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    rows = (
        (cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr),
        (sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr),
        (-sp, cp * sr, cp * cr),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> extrinsic xyz Euler angles [..., 3] in (-pi, pi]."""
    r00, r10, r20 = matrix[..., 0, 0], matrix[..., 1, 0], matrix[..., 2, 0]
    r21, r22 = matrix[..., 2, 1], matrix[..., 2, 2]
    cos_pitch = torch.sqrt(r00 * r00 + r10 * r10)
    pitch = torch.atan2(-r20, cos_pitch)
    roll = torch.atan2(r21, r22)
    yaw = torch.atan2(r10, r00)
    # Near gimbal lock (pitch = ±90°) roll and yaw share one degree of freedom: put it in yaw.
    locked = cos_pitch < 1e-6
    if bool(locked.any()):
        r01, r11 = matrix[..., 0, 1], matrix[..., 1, 1]
        roll = torch.where(locked, torch.zeros_like(roll), roll)
        yaw = torch.where(locked, torch.atan2(-r01, r11), yaw)
    return torch.stack((roll, pitch, yaw), dim=-1)


def matrix_to_rotvec(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> axis * angle vectors [..., 3], angle in [0, pi]."""
    trace = matrix[..., 0, 0] + matrix[..., 1, 1] + matrix[..., 2, 2]
    cos_angle = ((trace - 1.0) / 2.0).clamp(-1.0, 1.0)
    angle = torch.acos(cos_angle)
    skew = torch.stack(
        (
            matrix[..., 2, 1] - matrix[..., 1, 2],
            matrix[..., 0, 2] - matrix[..., 2, 0],
            matrix[..., 1, 0] - matrix[..., 0, 1],
        ),
        dim=-1,
    )
    sin_angle = torch.sin(angle)
    small = sin_angle.abs() < 1e-6
    scale = torch.where(small, torch.full_like(angle, 0.5), angle / (2.0 * sin_angle))
    rotvec = skew * scale.unsqueeze(-1)
    near_pi = small & (cos_angle < 0)
    if bool(near_pi.any()):
        # angle ≈ pi: the axis is the dominant column of (R + I) / 2.
        sym = (matrix + torch.eye(3, dtype=matrix.dtype, device=matrix.device)) / 2.0
        diag = torch.diagonal(sym, dim1=-2, dim2=-1)
        column = diag.argmax(dim=-1)
        axis = torch.gather(sym, -1, column[..., None, None].expand(*column.shape, 3, 1))[..., 0]
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rotvec = torch.where(near_pi.unsqueeze(-1), axis * angle.unsqueeze(-1), rotvec)
    return rotvec


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis * angle vectors [..., 3] -> rotation matrices [..., 3, 3] (Rodrigues)."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    axis = rotvec / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack(
        (
            torch.stack((zero, -z, y), dim=-1),
            torch.stack((z, zero, -x), dim=-1),
            torch.stack((-y, x, zero), dim=-1),
        ),
        dim=-2,
    )
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand(skew.shape)
    sin = torch.sin(angle)[..., None]
    one_minus_cos = (1.0 - torch.cos(angle))[..., None]
    return eye + sin * skew + one_minus_cos * (skew @ skew)


# ---------------------------------------------------------------------------------------------
# Pose algebra on the 7-D layout
# ---------------------------------------------------------------------------------------------


def _check_last_dim(name: str, tensor: torch.Tensor, size: int) -> None:
    if tensor.ndim == 0 or tensor.shape[-1] != size:
        raise PoseError(f"{name} must have shape [..., {size}], got {tuple(tensor.shape)}")


def integrate_pose(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Apply delta actions to end-effector states.

    Args:
        state: [..., 7] current states.
        action: [..., 7] delta actions (broadcastable against ``state``).

    Returns:
        [..., 7] next states: position + Δxyz, R(Δeuler) @ R(current), gripper clipped to [0, 1].
    """
    _check_last_dim("state", state, STATE_DIM)
    _check_last_dim("action", action, ACTION_DIM)
    position = state[..., POS] + action[..., POS]
    rotation = euler_to_matrix(action[..., ROT]) @ euler_to_matrix(state[..., ROT])
    gripper = (state[..., GRIPPER] + action[..., GRIPPER]).clamp(0.0, 1.0)
    return torch.cat((position, matrix_to_euler(rotation), gripper.unsqueeze(-1)), dim=-1)


def pose_delta(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """The action that takes ``start`` to ``end`` ([..., 7] each): inverse of integrate_pose."""
    _check_last_dim("start", start, STATE_DIM)
    _check_last_dim("end", end, STATE_DIM)
    rotation = euler_to_matrix(end[..., ROT]) @ euler_to_matrix(start[..., ROT]).transpose(-1, -2)
    return torch.cat(
        (
            end[..., POS] - start[..., POS],
            matrix_to_euler(rotation),
            (end[..., GRIPPER] - start[..., GRIPPER]).unsqueeze(-1),
        ),
        dim=-1,
    )


def rollout_states(state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Integrate a sequence of actions.

    Args:
        state: [B, 7] start states.
        actions: [B, H, 7] delta actions.

    Returns:
        [B, H, 7] the states after each action.
    """
    states = [state.new_empty(state.shape[0], 0, STATE_DIM)] if actions.shape[1] == 0 else []
    for step in range(actions.shape[1]):
        state = integrate_pose(state, actions[:, step])
        states.append(state.unsqueeze(1))
    return torch.cat(states, dim=1)


# ---------------------------------------------------------------------------------------------
# Safety filter: the last gate before actuation
# ---------------------------------------------------------------------------------------------


class SafetyFilter:
    """Clip requested delta actions so the commanded target respects the robot's limits.

    Non-finite action entries become 0 (hold). The translation is scaled to at most
    ``step.translation`` metres, the rotation to at most ``step.rotation`` radians, the gripper
    change to ``step.gripper``; then the target position is projected into the workspace box and
    the gripper target into [0, 1]. The returned action is the delta to that safe target.
    Each Euler-angle delta is clipped to ``±step.rotation`` before the rotation is composed, so
    a huge request keeps its sign (+100 rad turns +0.25 rad, not by 100 rad modulo a turn).
    """

    def __init__(self, limits: FrankaLimits | None = None) -> None:
        self.limits = limits or FrankaLimits()

    def __call__(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Return the safe action [..., 7] for ``state`` [..., 7] and ``action`` [..., 7]."""
        _check_last_dim("state", state, STATE_DIM)
        _check_last_dim("action", action, ACTION_DIM)
        if not bool(torch.isfinite(state).all()):
            raise PoseError("end-effector state contains NaN or inf; refusing to command the arm")
        step = self.limits.step
        action = torch.nan_to_num(action.to(state.dtype), nan=0.0, posinf=0.0, neginf=0.0)

        translation = action[..., POS]
        target_position = self.limits.workspace.clamp(state[..., POS] + translation)
        # Limit after projecting: from a state outside the box this still moves at most one step.
        translation = target_position - state[..., POS]
        norm = translation.norm(dim=-1, keepdim=True)
        translation = translation * (step.translation / norm.clamp_min(step.translation))

        euler = action[..., ROT].clamp(-step.rotation, step.rotation)
        rotvec = matrix_to_rotvec(euler_to_matrix(euler))
        angle = rotvec.norm(dim=-1, keepdim=True)
        rotvec = rotvec * (step.rotation / angle.clamp_min(step.rotation))
        rotation = matrix_to_euler(rotvec_to_matrix(rotvec))

        gripper = action[..., GRIPPER].clamp(-step.gripper, step.gripper)
        target_gripper = (state[..., GRIPPER] + gripper).clamp(0.0, 1.0)
        return torch.cat(
            (
                translation,
                rotation,
                (target_gripper - state[..., GRIPPER]).unsqueeze(-1),
            ),
            dim=-1,
        )

    def target(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The safe absolute target state [..., 7] reached from ``state`` by ``action``."""
        return integrate_pose(state, self(state, action))


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Wrap angles to (-pi, pi]."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def load_limits(name_or_path: str = "franka", overrides: list[str] | None = None) -> FrankaLimits:
    """Read ``configs/robot/<name>.yaml`` (or a YAML path) into ``FrankaLimits``."""
    from robots.config import load_config

    return load_config(FrankaLimits, name_or_path, group="robot", overrides=overrides)
