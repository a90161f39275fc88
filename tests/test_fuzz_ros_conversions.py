"""Fuzzing ``planner_ros.conversions`` with hypothesis: random ``Image`` messages (encodings,
width/height/step mismatches, data lengths, huge sizes), ``PoseStamped`` with NaN, huge or
non-unit quaternions, ``JointState`` with missing names or NaN. Each message is either decoded
to something usable or refused with ``MessageError`` naming the problem, exactly when an
independent check says it is malformed; round trips go through rclpy's CDR serialization."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
import torch  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from planner_ros.conversions import (  # noqa: E402
    ENCODINGS,
    MessageError,
    array_to_image,
    gripper_closedness,
    image_to_array,
    pose_to_state,
    state_to_pose,
)
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from planner.inputs import MAX_IMAGE_SIDE  # noqa: E402
from robots.franka import euler_to_matrix  # noqa: E402

FUZZ = settings(max_examples=30, deadline=None)
UINT32 = 2**32 - 1


def over_the_wire(msg):
    """The message as a subscriber receives it: serialized to CDR and back."""
    return deserialize_message(serialize_message(msg), type(msg))


# -- images -------------------------------------------------------------------------------------


@st.composite
def image_messages(draw) -> Image:
    """Images that are often almost right: one field (or several) off."""
    msg = Image()
    msg.encoding = draw(
        st.one_of(
            st.sampled_from([*ENCODINGS, "mono8", "rgba8", "bgra8", "16UC1", "RGB8", ""]),
            st.text(max_size=8),
        )
    )
    small, huge = st.integers(0, 12), st.integers(MAX_IMAGE_SIDE + 1, UINT32)
    msg.height = draw(st.one_of(small, huge))
    msg.width = draw(st.one_of(small, huge))
    row = msg.width * 3
    msg.step = draw(
        st.one_of(
            st.integers(0, 8).map(lambda pad: row + pad),
            st.integers(0, max(row - 1, 0)),
            st.integers(0, UINT32),
        ).filter(lambda step: step <= UINT32)
    )
    expected = msg.step * msg.height
    length = draw(
        st.one_of(
            st.just(expected),
            st.integers(-3, 3).map(lambda off: expected + off),
            st.integers(0, 64),
        ).filter(lambda n: 0 <= n <= 4096)  # never allocate a huge buffer in a test
    )
    msg.data = draw(st.binary(min_size=length, max_size=length))
    return msg


def image_problem(msg: Image) -> str | None:
    """An independent statement of what makes an image unusable (a word the error must hold)."""
    if msg.encoding not in ("rgb8", "bgr8"):
        return "encoding"
    if msg.height == 0 or msg.width == 0:
        return "no pixels"
    if max(msg.height, msg.width) > MAX_IMAGE_SIDE:
        return str(MAX_IMAGE_SIDE)
    if msg.step < 3 * msg.width:
        return "step"
    if len(msg.data) != msg.step * msg.height:
        return "bytes"
    return None


@given(msg=image_messages())
@settings(max_examples=60, deadline=None)
def test_images_decode_exactly_when_well_formed(msg):
    msg = over_the_wire(msg)
    problem = image_problem(msg)
    if problem is None:
        image = image_to_array(msg)
        assert image.shape == (msg.height, msg.width, 3) and image.dtype == np.uint8
        assert image.flags.c_contiguous and image.flags.writeable
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        first = rows[0, :3] if msg.encoding == "rgb8" else rows[0, 2::-1]
        np.testing.assert_array_equal(image[0, 0], first)
    else:
        with pytest.raises(MessageError, match=problem):
            image_to_array(msg)


@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    encoding=st.sampled_from(ENCODINGS),
    frame_id=st.text(alphabet=st.characters(codec="ascii", min_codepoint=32), max_size=12),
    seed=st.integers(0, 2**16),
)
@FUZZ
def test_array_image_array_round_trip(height, width, encoding, frame_id, seed):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = over_the_wire(array_to_image(image, encoding, frame_id))
    assert msg.header.frame_id == frame_id and msg.encoding == encoding
    np.testing.assert_array_equal(image_to_array(msg), image)


@given(
    array=st.one_of(
        st.builds(np.zeros, st.sampled_from([(4, 4), (4, 4, 4), (0, 4, 3), (4, 0, 3), (2,)])),
        st.builds(
            np.zeros,
            st.just((4, 4, 3)),
            st.sampled_from([np.float32, np.float64, np.int16, np.bool_, np.uint16]),
        ),
    )
)
@FUZZ
def test_arrays_that_are_not_rgb_images_are_refused(array):
    with pytest.raises(MessageError, match=r"uint8 \[H, W, 3\]"):
        array_to_image(array)


# -- poses --------------------------------------------------------------------------------------

finite = st.floats(-2.0, 2.0)
wild = st.one_of(
    finite,
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e308, -1e308, 1e-300]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def near_unit_quaternions(draw) -> tuple[float, ...]:
    """Quaternions of norm 0.98 .. 1.02: just inside and just outside tf2's tolerance."""
    q = np.array(draw(st.tuples(finite, finite, finite, finite).filter(lambda q: any(q))))
    return tuple(draw(st.floats(0.98, 1.02)) * q / np.linalg.norm(q))


@given(
    position=st.tuples(wild, wild, wild),
    quaternion=st.one_of(st.tuples(wild, wild, wild, wild), near_unit_quaternions()),
    gripper=st.one_of(st.floats(0.0, 1.0), st.sampled_from([np.nan, np.inf])),
)
@settings(max_examples=60, deadline=None)
def test_poses_convert_exactly_when_finite_and_unit(position, quaternion, gripper):
    msg = PoseStamped()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = map(float, quaternion)
    msg = over_the_wire(msg)
    q = np.array(quaternion, dtype=np.float64)
    with np.errstate(over="ignore"):
        squared_norm = float(np.sum(q * q)) if np.all(np.isfinite(q)) else np.nan
    if not (np.all(np.isfinite(position)) and np.isfinite(gripper)):
        with pytest.raises(MessageError, match="not finite"):
            pose_to_state(msg, gripper)
    elif not abs(squared_norm - 1.0) < 0.01:
        with pytest.raises(MessageError, match="quaternion"):
            pose_to_state(msg, gripper)
    elif abs(abs(squared_norm - 1.0) - 0.01) > 1e-9:  # (not on the tolerance's edge)
        state = pose_to_state(msg, gripper)
        assert state.shape == (7,) and np.isfinite(state).all()
        np.testing.assert_array_equal(state[:3], position)
        unit = q / np.sqrt(squared_norm)
        x, y, z, w = unit
        expected = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        rotation = euler_to_matrix(torch.from_numpy(state[3:6])).numpy()
        np.testing.assert_allclose(rotation, expected, atol=1e-9)


@given(
    state=st.tuples(
        *[st.floats(-1.0, 1.0)] * 3,
        *[st.floats(-10.0, 10.0)] * 3,  # any angles, not only the principal range
        st.floats(0.0, 1.0),
    ),
    frame_id=st.sampled_from(["base", "fr3_link0", ""]),
)
@FUZZ
def test_state_pose_state_round_trip(state, frame_id):
    state = np.array(state)
    msg, gripper = state_to_pose(state, frame_id)
    back = pose_to_state(over_the_wire(msg), gripper)
    np.testing.assert_array_equal(back[[0, 1, 2, 6]], state[[0, 1, 2, 6]])
    np.testing.assert_allclose(
        euler_to_matrix(torch.from_numpy(back[3:6])).numpy(),
        euler_to_matrix(torch.from_numpy(state[3:6])).numpy(),
        atol=1e-9,
    )


@given(state=st.lists(wild, min_size=0, max_size=9))
@FUZZ
def test_states_that_are_not_seven_finite_numbers_are_refused(state):
    state = np.array(state, dtype=np.float64)
    if state.shape == (7,) and np.all(np.isfinite(state)):
        state_to_pose(state)  # (angles may be anything finite)
    else:
        with pytest.raises(MessageError, match="7 finite"):
            state_to_pose(state)


# -- gripper joint states -----------------------------------------------------------------------


@given(
    names=st.one_of(
        st.just([]),
        st.lists(st.sampled_from(["fr3_finger_joint1", "fr3_finger_joint2", "fr3_joint4"])),
    ),
    positions=st.lists(
        st.one_of(st.floats(-0.01, 0.05), st.sampled_from([np.nan, np.inf])), max_size=4
    ),
)
@settings(max_examples=60, deadline=None)
def test_gripper_states_convert_or_name_the_problem(names, positions):
    msg = over_the_wire(JointState(name=names, position=[float(p) for p in positions]))
    fingers = [p for n, p in zip(names, positions, strict=False) if "finger_joint" in n]
    fingers = fingers if names else positions
    if names and len(names) != len(positions):
        match = "names but"
    elif names and not any("finger_joint" in n for n in names):
        match = "no finger joint"
    elif not fingers or not np.all(np.isfinite(fingers)):
        match = "no finite finger"
    else:
        closedness = gripper_closedness(msg)
        assert 0.0 <= closedness <= 1.0
        width = sum(fingers) if len(fingers) > 1 else 2 * fingers[0]
        assert closedness == pytest.approx(float(np.clip(1 - width / 0.08, 0, 1)))
        return
    with pytest.raises(MessageError, match=match):
        gripper_closedness(msg)
