"""Conversions between ROS 2 messages and the library's arrays: ``sensor_msgs/Image`` <-> uint8
RGB ``[H, W, 3]``, ``PoseStamped`` + gripper <-> the 7-D end-effector state of ``robots.franka``.

Every malformed message raises :class:`MessageError` naming what is wrong, so a node can log it
and skip the message.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState

from planner.inputs import MAX_IMAGE_SIDE
from robots.franka import FINGER_RANGE, STATE_DIM, euler_to_matrix, matrix_to_euler

ENCODINGS = ("rgb8", "bgr8")
# Fingertip distance (m) with the gripper fully open: two fingers of FINGER_RANGE travel each.
MAX_FINGER_WIDTH = 2.0 * FINGER_RANGE[1]
# tf2 rejects a quaternion whose squared norm is further than this from 1 (denormalised).
QUATERNION_TOLERANCE = 0.01


class MessageError(ValueError):
    """A ROS message that cannot be converted (wrong encoding, size, step, length or values)."""


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def image_to_array(msg: Image) -> np.ndarray:
    """Decode an rgb8/bgr8 ``sensor_msgs/Image`` (row padding allowed) into RGB.

    Args:
        msg: the image; ``step`` may exceed ``width * 3`` (padded rows).

    Returns:
        uint8 ``[H, W, 3]`` RGB array (a writable, C-contiguous copy).

    Raises:
        MessageError: unsupported encoding, zero size, a side over the planner's
            ``MAX_IMAGE_SIDE``, step too small, or a data length that is not ``step * height``.
    """
    if msg.encoding not in ENCODINGS:
        raise MessageError(
            f"image encoding {msg.encoding!r} is not supported; publish one of {ENCODINGS}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MessageError(f"image has no pixels: height={height}, width={width}")
    if max(height, width) > MAX_IMAGE_SIDE:
        raise MessageError(
            f"image is {width}x{height} pixels; the planner takes at most {MAX_IMAGE_SIDE} per "
            f"side (resize on the camera side)"
        )
    row_bytes = width * 3
    if step < row_bytes:
        raise MessageError(f"image step {step} is smaller than width * 3 = {row_bytes}")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size != step * height:
        raise MessageError(
            f"image data has {data.size} bytes, expected step * height = {step} * {height}"
            f" = {step * height}"
        )
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, 3)
    if msg.encoding == "bgr8":
        pixels = pixels[..., ::-1]
    return np.array(pixels, order="C", copy=True)


def array_to_image(
    image: np.ndarray, encoding: str = "rgb8", frame_id: str = "", stamp=None
) -> Image:
    """Encode a uint8 RGB ``[H, W, 3]`` array as an unpadded ``sensor_msgs/Image``.

    Args:
        image: uint8 ``[H, W, 3]`` RGB pixels.
        encoding: ``rgb8`` or ``bgr8`` (channels are swapped for ``bgr8``).
        frame_id: header frame.
        stamp: ``builtin_interfaces/Time`` for the header (left zero if None).

    Raises:
        MessageError: wrong dtype, shape or encoding.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise MessageError(
            f"image must be a non-empty uint8 [H, W, 3] array, got {image.dtype} {image.shape}"
        )
    if encoding not in ENCODINGS:
        raise MessageError(f"image encoding {encoding!r} is not supported; use one of {ENCODINGS}")
    pixels = image[..., ::-1] if encoding == "bgr8" else image
    msg = Image()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


# ---------------------------------------------------------------------------------------------
# Rotations (quaternions as [x, y, z, w], the geometry_msgs order)
# ---------------------------------------------------------------------------------------------


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """Unit quaternion ``[4]`` (x, y, z, w) -> rotation matrix ``[3, 3]``.

    A quaternion within tf2's tolerance of unit length (|norm² - 1| < 0.01) is normalised
    here; one further off is refused, as tf2 refuses it.

    Raises:
        MessageError: non-finite or denormalised (e.g. all-zero) quaternion.
    """
    q = np.asarray(quaternion, dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise MessageError(f"orientation quaternion {q.tolist()} is not 4 finite numbers")
    scale = float(np.abs(q).max())
    norm = scale * float(np.linalg.norm(q / scale)) if scale > 0 else 0.0  # no overflow
    if not abs(norm * norm - 1.0) < QUATERNION_TOLERANCE:
        raise MessageError(
            f"orientation quaternion {q.tolist()} has norm {norm:.6g}; it must be a unit "
            f"quaternion (|norm² - 1| < {QUATERNION_TOLERANCE:g}, as tf2 requires)"
        )
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` -> unit quaternion ``[4]`` (x, y, z, w) with w >= 0.

    Shepperd's method: divide by the largest of the four candidate terms for accuracy.
    """
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    candidates = (trace, m[0, 0], m[1, 1], m[2, 2])
    largest = int(np.argmax(candidates))
    if largest == 0:
        s = 2.0 * math.sqrt(max(1.0 + trace, 1e-12))
        q = (m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], 0.25 * s * s)
    elif largest == 1:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 1e-12))
        q = (0.25 * s * s, m[0, 1] + m[1, 0], m[0, 2] + m[2, 0], m[2, 1] - m[1, 2])
    elif largest == 2:
        s = 2.0 * math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 1e-12))
        q = (m[0, 1] + m[1, 0], 0.25 * s * s, m[1, 2] + m[2, 1], m[0, 2] - m[2, 0])
    else:
        s = 2.0 * math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 1e-12))
        q = (m[0, 2] + m[2, 0], m[1, 2] + m[2, 1], 0.25 * s * s, m[1, 0] - m[0, 1])
    quaternion = np.array(q) / s
    quaternion /= np.linalg.norm(quaternion)
    return -quaternion if quaternion[3] < 0 else quaternion


# ---------------------------------------------------------------------------------------------
# End-effector state
# ---------------------------------------------------------------------------------------------


def pose_to_state(msg: PoseStamped, gripper: float) -> np.ndarray:
    """``PoseStamped`` (robot base frame) + gripper closedness -> 7-D state.

    Returns:
        float64 ``[7]`` ``[x, y, z, roll, pitch, yaw, gripper]`` (extrinsic xyz Euler).

    Raises:
        MessageError: non-finite position or gripper, invalid quaternion.
    """
    p, o = msg.pose.position, msg.pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not np.all(np.isfinite(position)) or not math.isfinite(gripper):
        raise MessageError(f"pose position {position.tolist()} / gripper {gripper} not finite")
    matrix = torch.from_numpy(quaternion_to_matrix(np.array([o.x, o.y, o.z, o.w])))
    euler = matrix_to_euler(matrix).numpy()
    return np.concatenate([position, euler, [float(gripper)]])


def state_to_pose(state: np.ndarray, frame_id: str = "", stamp=None) -> tuple[PoseStamped, float]:
    """7-D state ``[7]`` -> (``PoseStamped``, gripper closedness).

    Raises:
        MessageError: wrong shape or non-finite entries.
    """
    state = np.asarray(state, dtype=np.float64)
    if state.shape != (STATE_DIM,) or not np.all(np.isfinite(state)):
        raise MessageError(f"state must be {STATE_DIM} finite numbers, got {state.tolist()}")
    matrix = euler_to_matrix(torch.from_numpy(state[3:6])).numpy()
    x, y, z, w = matrix_to_quaternion(matrix)
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in state[:3])
    msg.pose.orientation.x, msg.pose.orientation.y = float(x), float(y)
    msg.pose.orientation.z, msg.pose.orientation.w = float(z), float(w)
    return msg, float(state[6])


def gripper_closedness(msg: JointState) -> float:
    """Closedness 0 (open) .. 1 (closed) from a gripper ``JointState``.

    Uses the joints whose name contains ``finger_joint`` (franka_gripper and the sim publish
    ``<arm>_finger_joint1/2``, each 0 .. 0.04 m); a message without names is taken to hold
    finger positions only. Width = sum of finger positions, closedness = ``1 - width / 0.08``.

    Raises:
        MessageError: names and positions of different lengths, names without a finger joint,
            no finger positions, or non-finite ones.
    """
    names, positions = list(msg.name), list(msg.position)
    if names and len(names) != len(positions):
        raise MessageError(
            f"gripper joint state has {len(names)} names but {len(positions)} positions"
        )
    if names and not any("finger_joint" in name for name in names):
        raise MessageError(
            f"gripper joint state names no finger joint (names containing 'finger_joint'): {names}"
        )
    if names:
        positions = [p for n, p in zip(names, positions, strict=True) if "finger_joint" in n]
    fingers = np.array(positions, dtype=np.float64)
    if fingers.size == 0 or not np.all(np.isfinite(fingers)):
        raise MessageError(f"gripper joint state has no finite finger positions: {positions}")
    # A single reported joint (mimic gripper) stands for both fingers.
    width = float(fingers.sum()) if fingers.size > 1 else 2.0 * float(fingers[0])
    return float(np.clip(1.0 - width / MAX_FINGER_WIDTH, 0.0, 1.0))


def finger_positions(closedness: float) -> tuple[float, float]:
    """The two finger joint positions (m) for a closedness in [0, 1] (inverse of the above)."""
    half_width = float(np.clip(1.0 - closedness, 0.0, 1.0)) * MAX_FINGER_WIDTH / 2.0
    return half_width, half_width


def stamp_seconds(msg) -> float:
    """A message's header stamp in seconds (ROS time; 0 when the sender left it unset)."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
