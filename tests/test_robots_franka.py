"""Pose algebra and safety filter of robots.franka."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from robots.franka import (
    FrankaLimits,
    PoseError,
    SafetyFilter,
    euler_to_matrix,
    integrate_pose,
    matrix_to_euler,
    matrix_to_rotvec,
    pose_delta,
    rollout_states,
    rotvec_to_matrix,
)

finite = st.floats(-10.0, 10.0, allow_nan=False, width=64)
angles = st.floats(-math.pi, math.pi, allow_nan=False, width=64)
# Pitch away from ±90° where extrinsic-xyz Euler angles are not unique.
pitches = st.floats(-1.45, 1.45, allow_nan=False, width=64)


@st.composite
def states(draw: st.DrawFn) -> torch.Tensor:
    position = [draw(st.floats(-1.0, 1.0, width=64)) for _ in range(3)]
    euler = [draw(angles), draw(pitches), draw(angles)]
    gripper = draw(st.floats(0.0, 1.0, width=64))
    return torch.tensor([*position, *euler, gripper], dtype=torch.float64)


def _same_pose(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-7) -> None:
    torch.testing.assert_close(a[..., :3], b[..., :3], atol=atol, rtol=0)
    torch.testing.assert_close(
        euler_to_matrix(a[..., 3:6]), euler_to_matrix(b[..., 3:6]), atol=atol, rtol=0
    )
    torch.testing.assert_close(a[..., 6], b[..., 6], atol=atol, rtol=0)


@settings(max_examples=200, deadline=None)
@given(start=states(), end=states())
def test_integrate_inverts_pose_delta(start: torch.Tensor, end: torch.Tensor) -> None:
    _same_pose(integrate_pose(start, pose_delta(start, end)), end)


@settings(max_examples=100, deadline=None)
@given(euler=st.tuples(angles, pitches, angles))
def test_euler_round_trip(euler: tuple[float, float, float]) -> None:
    angles_in = torch.tensor(euler, dtype=torch.float64)
    back = matrix_to_euler(euler_to_matrix(angles_in))
    torch.testing.assert_close(euler_to_matrix(back), euler_to_matrix(angles_in), atol=1e-9, rtol=0)


@settings(max_examples=100, deadline=None)
@given(rotvec=arrays(np.float64, 3, elements=st.floats(-3.0, 3.0, width=64)))
def test_rotvec_round_trip(rotvec: np.ndarray) -> None:
    matrix = rotvec_to_matrix(torch.from_numpy(rotvec))
    torch.testing.assert_close(
        rotvec_to_matrix(matrix_to_rotvec(matrix)), matrix, atol=1e-6, rtol=0
    )


def test_rotation_composes_on_the_left() -> None:
    state = torch.tensor([0.5, 0.0, 0.3, math.pi, 0.0, 0.0, 0.0], dtype=torch.float64)
    action = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0], dtype=torch.float64)
    expected = euler_to_matrix(action[3:6]) @ euler_to_matrix(state[3:6])
    torch.testing.assert_close(euler_to_matrix(integrate_pose(state, action)[3:6]), expected)


def test_gripper_is_clipped_and_batching_broadcasts() -> None:
    state = torch.zeros(4, 7)
    state[:, 6] = 0.9
    action = torch.zeros(4, 7)
    action[:, 6] = torch.tensor([0.5, -2.0, 0.05, 0.0])
    out = integrate_pose(state, action)
    assert out.shape == (4, 7)
    torch.testing.assert_close(out[:, 6], torch.tensor([1.0, 0.0, 0.95, 0.9]))


def test_rollout_states_matches_stepwise_integration() -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.tensor([[0.5, 0.0, 0.3, math.pi, 0.0, 0.0, 0.5]]).repeat(3, 1)
    actions = 0.05 * torch.randn(3, 4, 7, generator=generator)
    states_out = rollout_states(start, actions)
    assert states_out.shape == (3, 4, 7)
    state = start
    for step in range(4):
        state = integrate_pose(state, actions[:, step])
    torch.testing.assert_close(states_out[:, -1], state)


def test_wrong_shapes_raise_pose_error() -> None:
    with pytest.raises(PoseError, match="shape"):
        integrate_pose(torch.zeros(6), torch.zeros(7))
    with pytest.raises(PoseError, match="action"):
        SafetyFilter()(torch.zeros(7), torch.zeros(3))


# --- safety filter -------------------------------------------------------------------------------

limits = FrankaLimits()
inside = st.tuples(
    *(
        st.floats(lo, hi, width=64)
        for lo, hi in zip(limits.workspace.lower, limits.workspace.upper, strict=True)
    )
)
any_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64), st.floats(-1e6, 1e6, width=64)
)


@settings(max_examples=300, deadline=None)
@given(
    position=inside,
    euler=st.tuples(angles, pitches, angles),
    gripper=st.floats(0.0, 1.0, width=64),
    action=st.lists(any_value, min_size=7, max_size=7),
)
def test_safety_filter_keeps_every_target_inside_limits(
    position: tuple, euler: tuple, gripper: float, action: list[float]
) -> None:
    state = torch.tensor([*position, *euler, gripper], dtype=torch.float64)
    safe = SafetyFilter(limits)(state, torch.tensor(action, dtype=torch.float64))
    assert bool(torch.isfinite(safe).all())
    assert float(safe[:3].norm()) <= limits.step.translation + 1e-9
    angle = float(matrix_to_rotvec(euler_to_matrix(safe[3:6])).norm())
    assert angle <= limits.step.rotation + 1e-6
    target = integrate_pose(state, safe)
    assert bool(limits.workspace.contains(target[:3]))
    assert 0.0 <= float(target[6]) <= 1.0


def test_safety_filter_passes_small_actions_unchanged() -> None:
    state = torch.tensor([0.5, 0.0, 0.3, math.pi, 0.0, 0.0, 0.0], dtype=torch.float64)
    action = torch.tensor([0.01, -0.02, 0.005, 0.05, -0.02, 0.1, 0.3], dtype=torch.float64)
    torch.testing.assert_close(SafetyFilter()(state, action), action, atol=1e-9, rtol=0)


def test_safety_filter_from_outside_moves_one_step_toward_the_box() -> None:
    state = torch.tensor([0.5, 0.0, 0.9, math.pi, 0.0, 0.0, 0.0], dtype=torch.float64)
    safe = SafetyFilter()(state, torch.zeros(7, dtype=torch.float64))
    torch.testing.assert_close(safe[:3], torch.tensor([0.0, 0.0, -0.05], dtype=torch.float64))


def test_safety_filter_refuses_a_nan_state() -> None:
    state = torch.full((7,), float("nan"))
    with pytest.raises(PoseError, match="NaN"):
        SafetyFilter()(state, torch.zeros(7))


def test_shipped_limits_config_matches_the_defaults() -> None:
    from robots.franka import load_limits

    assert load_limits() == FrankaLimits()
    assert load_limits(overrides=["step.translation=0.02"]).step.translation == 0.02
