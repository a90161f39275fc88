"""The pieces of ``goal_planner``'s safety, without a running node: ``CommandGuard`` (what may be
commanded: inside the box, within a step of the last command and of the arm; the hold), and the
input checks of ``streams`` (stamps, pose continuity, goals, the rejection counter)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")

ROS_PACKAGE = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "planner"
if str(ROS_PACKAGE) not in sys.path:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROS_PACKAGE))

from planner_ros.guard import CommandGuard  # noqa: E402
from planner_ros.streams import (  # noqa: E402
    InputRejected,
    PoseContinuity,
    Rejection,
    RejectionCounter,
    StampOrder,
    checked_goal_state,
)

from robots.franka import FrankaLimits  # noqa: E402

LIMITS = FrankaLimits()
ARM = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.6])


def at(x: float, y: float = 0.0, z: float = 0.3, gripper: float = 0.6) -> np.ndarray:
    return np.array([x, y, z, np.pi, 0.0, 0.0, gripper])


# -- CommandGuard -------------------------------------------------------------------------------


def test_a_far_reported_pose_is_never_a_hold_target():
    """Defect 1: the e-stop hold was the reported pose, (1e6, 0, 0.3) included."""
    guard = CommandGuard(LIMITS)
    target, why = guard.hold_target(at(1e6))
    assert target is None and "m from the measured pose" in why  # its box projection is far
    guard.commit(ARM, hold=False)
    target, why = guard.hold_target(at(1e6))
    assert target is None and "measured pose" in why  # the last command is 1e6 m from it too


def test_the_hold_is_the_measured_pose_in_the_box_keeping_the_grip():
    guard = CommandGuard(LIMITS)
    guard.commit(at(0.64, gripper=1.0), hold=False)  # closed on a cube
    target, why = guard.hold_target(at(0.66, gripper=0.55))  # 1 cm outside the box
    assert not why
    np.testing.assert_allclose(target[:3], [0.65, 0.0, 0.3])  # projected into the box
    assert target[6] == 1.0  # the commanded grip, not the measured opening
    guard.commit(target, hold=True)
    # Latched: while it stays valid, the next hold is the same target, not the drifting arm.
    again, _ = guard.hold_target(at(0.645, gripper=0.55))
    np.testing.assert_array_equal(again, target)


def test_a_planned_target_is_bounded_by_the_arm_and_the_last_command():
    guard = CommandGuard(LIMITS)
    guard.commit(at(0.5), hold=False)
    arm = at(0.53)
    bounded = guard.bound(at(0.9), arm)
    assert not guard.why_unsafe(bounded, arm)
    assert np.linalg.norm(bounded[:3] - at(0.5)[:3]) <= 0.05 + 1e-9
    assert "the last commanded target" in guard.why_unsafe(at(0.57), at(0.55))


def test_the_arm_far_from_the_last_command_gets_nothing_until_released():
    guard = CommandGuard(LIMITS, resync_s=0.0)
    guard.commit(at(0.5), hold=False)
    arm = at(0.5, y=0.2)  # 20 cm away: moved by hand, a reset, a bogus pose
    assert "0.2000 m from the last commanded target" in guard.arm_far(arm)
    assert guard.hold_target(arm)[0] is None
    assert not guard.update_resync(arm, now_s=0.0) and not guard.update_resync(arm, 100.0)
    guard.release()  # ~/enable: the operator vouches for the pose
    assert guard.reanchors == 1 and guard.hold_target(arm)[0] is not None


def test_resync_re_anchors_after_the_arm_stayed_away():
    guard = CommandGuard(LIMITS, resync_s=1.0)
    guard.commit(at(0.5), hold=False)
    arm = at(0.5, y=0.2)
    assert not guard.update_resync(arm, now_s=10.0)
    assert not guard.update_resync(at(0.5), now_s=10.5)  # came back: the clock restarts
    assert not guard.update_resync(arm, now_s=11.0)
    assert guard.update_resync(arm, now_s=12.0) and guard.anchor is None


# -- streams ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [(0.0, "unstamped"), (95.0, "stale"), (100.5, "future"), (99.2, "order")],
)
def test_stamps_that_are_unset_stale_future_or_out_of_order_are_rejected(stamp, reason):
    order = StampOrder()
    order.previous_s = 99.5
    with pytest.raises(InputRejected) as error:
        order.check(stamp, now_s=100.0, max_age_s=1.0, skew_s=0.05)
    assert error.value.rejection.reason == reason
    order.check(99.7, now_s=100.0, max_age_s=1.0, skew_s=0.05)  # in order and fresh


def test_a_pose_further_than_the_arm_can_move_is_rejected():
    continuity = PoseContinuity(LIMITS.speed)
    continuity.accept(at(0.5), stamp_s=10.0)
    continuity.check(at(0.52), stamp_s=10.05)  # 0.4 m/s: fine
    with pytest.raises(InputRejected, match="moved 0.060 m in 0.010 s"):
        continuity.check(at(0.56), stamp_s=10.01)  # 6 m/s: not the arm's
    continuity.check(at(0.9), stamp_s=10.3)  # 0.4 m in 0.3 s: the arm can (a sim reset)
    turned = at(0.5)
    turned[3] = np.pi - 0.5
    with pytest.raises(InputRejected, match="turned 0.500 rad"):
        continuity.check(turned, stamp_s=10.02)


def test_goal_states_must_be_reachable_and_well_formed():
    np.testing.assert_allclose(checked_goal_state(at(0.5), LIMITS.workspace), at(0.5))
    for bad, reason in (
        (at(9.0), "unreachable"),
        (at(0.5, gripper=5.0), "malformed"),
        ([0.5, 0.0, 0.3], "malformed"),
        (at(0.5) * np.nan, "malformed"),
    ):
        with pytest.raises(InputRejected) as error:
            checked_goal_state(bad, LIMITS.workspace)
        assert error.value.rejection.reason == reason


def test_rejections_are_all_counted_but_logged_once_per_period():
    counter = RejectionCounter()
    lines = [counter.add("pose", Rejection("jump", "far")) for _ in range(50)]
    assert lines[0] == "rejecting pose: far" and lines[1:] == [None] * 49
    assert counter.add("image", Rejection("malformed", "1x1")) is not None  # another reason
    assert counter.totals() == {"image": 1, "pose": 50, "gripper": 0, "goal": 0}
    assert counter.by_reason() == {"image/malformed": 1, "pose/jump": 50}
    assert counter.last == "image: 1x1"
