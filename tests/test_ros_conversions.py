"""ROS message conversions of ``planner_ros.conversions``: images (encodings, row padding, bad
messages) and PoseStamped + gripper <-> the 7-D state, with hypothesis round trips."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from planner_ros.conversions import (  # noqa: E402
    MessageError,
    array_to_image,
    finger_positions,
    gripper_closedness,
    image_to_array,
    matrix_to_quaternion,
    pose_to_state,
    quaternion_to_matrix,
    state_to_pose,
)
from sensor_msgs.msg import Image, JointState  # noqa: E402

from robots.franka import euler_to_matrix  # noqa: E402

BOUNDED = settings(max_examples=40, deadline=None)


def _random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    padding=st.integers(0, 7),
    encoding=st.sampled_from(["rgb8", "bgr8"]),
)
@BOUNDED
def test_image_round_trip_with_row_padding(height, width, padding, encoding):
    image = _random_image(height, width, seed=height * 31 + width)
    msg = array_to_image(image, encoding=encoding)
    # Re-pack with `padding` junk bytes after every row, as some drivers do.
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(height, width * 3)
    padded = np.concatenate([rows, np.full((height, padding), 77, np.uint8)], axis=1)
    msg.step, msg.data = width * 3 + padding, padded.tobytes()
    np.testing.assert_array_equal(image_to_array(msg), image)


def test_bgr8_swaps_channels():
    image = _random_image(4, 5)
    msg = array_to_image(image, encoding="bgr8")
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(4, 5, 3)
    np.testing.assert_array_equal(raw, image[..., ::-1])
    assert msg.step == 15 and msg.encoding == "bgr8"


def _message(**fields) -> Image:
    msg = array_to_image(_random_image(4, 6))
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"encoding": "mono8"}, "encoding 'mono8'"),
        ({"encoding": "16UC1"}, "not supported"),
        ({"height": 0}, "no pixels"),
        ({"step": 17}, "step 17 is smaller"),
        ({"step": 20}, "expected step * height"),
        ({"data": bytes(10)}, "has 10 bytes"),
        ({"height": 5}, "expected step * height"),
    ],
)
def test_malformed_images_raise_message_error(fields, complaint):
    with pytest.raises(MessageError, match=complaint.replace("*", r"\*")):
        image_to_array(_message(**fields))


def test_array_to_image_rejects_bad_arrays():
    with pytest.raises(MessageError, match="uint8"):
        array_to_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(MessageError, match=r"\[H, W, 3\]"):
        array_to_image(np.zeros((4, 4), np.uint8))
    assert issubclass(MessageError, ValueError)


angles = st.floats(-np.pi + 1e-3, np.pi - 1e-3)


@given(
    position=st.tuples(*[st.floats(-1.0, 1.0)] * 3),
    roll=angles,
    pitch=st.floats(-1.5, 1.5),
    yaw=angles,
    gripper=st.floats(0.0, 1.0),
)
@BOUNDED
def test_pose_round_trip_preserves_state_and_rotation(position, roll, pitch, yaw, gripper):
    state = np.array([*position, roll, pitch, yaw, gripper])
    msg, closedness = state_to_pose(state, frame_id="base")
    back = pose_to_state(msg, closedness)
    np.testing.assert_allclose(back[:3], state[:3], atol=1e-12)
    assert back[6] == gripper and msg.header.frame_id == "base"
    # Compare rotations (Euler angles are not unique near gimbal lock).
    rotation = euler_to_matrix(torch.from_numpy(state[3:6]))
    np.testing.assert_allclose(
        euler_to_matrix(torch.from_numpy(back[3:6])).numpy(), rotation.numpy(), atol=1e-9
    )
    q = msg.pose.orientation
    assert abs(q.x**2 + q.y**2 + q.z**2 + q.w**2 - 1.0) < 1e-12 and q.w >= 0


@given(quaternion=st.tuples(*[st.floats(-1.0, 1.0)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1))
@BOUNDED
def test_quaternion_matrix_round_trip(quaternion):
    q = np.array(quaternion) / np.linalg.norm(quaternion)
    matrix = quaternion_to_matrix(q)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    back = matrix_to_quaternion(matrix)
    # q and -q are the same rotation.
    assert min(np.abs(back - q).max(), np.abs(back + q).max()) < 1e-9


def test_known_rotation_hand_pointing_down():
    # roll = pi: TCP z axis points down; quaternion (1, 0, 0, 0) in xyzw.
    msg, _ = state_to_pose(np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0]))
    o = msg.pose.orientation
    np.testing.assert_allclose([abs(o.x), o.y, o.z, o.w], [1.0, 0.0, 0.0, 0.0], atol=1e-12)


def test_bad_poses_raise_message_error():
    msg, _ = state_to_pose(np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]))
    msg.pose.orientation.w = 0.0
    with pytest.raises(MessageError, match="quaternion"):
        pose_to_state(msg, 0.0)
    msg.pose.orientation.w, msg.pose.position.x = 1.0, float("nan")
    with pytest.raises(MessageError, match="not finite"):
        pose_to_state(msg, 0.0)
    with pytest.raises(MessageError, match="7 finite"):
        state_to_pose(np.zeros(6))


def test_gripper_closedness_from_finger_joints():
    for closedness in (0.0, 0.25, 1.0):
        msg = JointState(name=["fr3_finger_joint1", "fr3_finger_joint2"])
        msg.position = list(finger_positions(closedness))
        assert gripper_closedness(msg) == pytest.approx(closedness)
    arm_and_fingers = JointState(name=["fr3_joint1", "fr3_finger_joint1", "fr3_finger_joint2"])
    arm_and_fingers.position = [1.5, 0.02, 0.02]
    assert gripper_closedness(arm_and_fingers) == pytest.approx(0.5)
    with pytest.raises(MessageError, match="no finite finger"):
        gripper_closedness(JointState())
