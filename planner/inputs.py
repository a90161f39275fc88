"""Checks of what enters the planner (observations and goals) and the goal-cache key: bad
input raises ``PlanInputError`` naming the problem before anything reaches the model.

What is accepted (everything else is a ``PlanInputError``):
  image  uint8 RGB ``[H, W, 3]``, numpy or torch (any device, any strides), each side in
         ``[MIN_IMAGE_SIDE, MAX_IMAGE_SIDE]``; the world model crops and resizes it. The upper
         bound keeps the model's float32 copy of one frame under ~200 MB (a 4K UHD camera frame,
         3840x2160, fits); resize larger frames on the camera side.
  state  7 finite real numbers (ints and floats of any width, numpy, torch or a sequence; no
         bools, complex numbers or strings) whose position lies within ``MAX_POSITION_M`` of
         the robot base (metres: a larger value is almost always a millimetre reading), and
         whose gripper closedness is in [0, 1] (within ``GRIPPER_TOLERANCE``, then clipped).
         An angle outside [-pi, pi] but within ``MAX_ANGLE_RAD`` (e.g. 100 rad) is the same
         rotation wrapped into (-pi, pi], the range the world models were trained on.
  obs    a mapping with "image" and "state"; goal: such a mapping ("state" optional) or an image.
"""

from __future__ import annotations

import hashlib
import reprlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from robots.franka import GRIPPER, POS, ROT, STATE_DIM

MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 4096
MAX_POSITION_M = 10.0
GRIPPER_TOLERANCE = 0.05  # a sensor reading this far outside [0, 1] is clipped, not refused
MAX_ANGLE_RAD = 1000.0  # beyond this an "angle" is no sensor's reading of a rotation
REAL_KINDS = "iuf"  # numpy dtype kinds accepted for states: signed, unsigned, float


class PlanInputError(ValueError):
    """An observation or goal the planner cannot use (the message names the problem)."""


def check_image(image: Any, where: str) -> np.ndarray | torch.Tensor:
    """A uint8 RGB image [H, W, 3] (numpy or torch), or PlanInputError saying what is wrong."""
    if not isinstance(image, np.ndarray | torch.Tensor):
        raise PlanInputError(f"{where} must be a uint8 array [H, W, 3], got {type(image).__name__}")
    if image.dtype not in (np.uint8, torch.uint8):
        raise PlanInputError(f"{where} must be uint8 RGB (0..255), got dtype {image.dtype}")
    shape = tuple(image.shape)
    if len(shape) != 3 or shape[2] != 3:
        raise PlanInputError(f"{where} must have shape [H, W, 3] (RGB, HWC), got {shape}")
    if min(shape[:2]) < MIN_IMAGE_SIDE or max(shape[:2]) > MAX_IMAGE_SIDE:
        raise PlanInputError(
            f"{where} is {shape[0]}x{shape[1]} pixels; each side must be in "
            f"[{MIN_IMAGE_SIDE}, {MAX_IMAGE_SIDE}] (resize large frames before planning)"
        )
    return image


def _real_array(values: Any, where: str) -> np.ndarray:
    """``values`` as a float64 numpy array, refusing bools, complex numbers and non-numbers."""
    if isinstance(values, torch.Tensor):
        if values.dtype == torch.bool or values.is_complex():
            raise PlanInputError(
                f"{where} must be 7 numbers (ints or floats), got dtype {values.dtype}"
            )
        return values.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise PlanInputError(f"{where} must be 7 numbers, got {reprlib.repr(values)}") from error
    if array.dtype.kind not in REAL_KINDS:
        raise PlanInputError(
            f"{where} must be 7 numbers (ints or floats), got {reprlib.repr(values)} "
            f"(dtype {array.dtype})"
        )
    return array.astype(np.float64)


def check_state(state: Any, where: str) -> torch.Tensor:
    """A finite end-effector state of 7 numbers -> float32 tensor [7], or PlanInputError."""
    return torch.from_numpy(state_values(state, where)).to(torch.float32)


def state_values(state: Any, where: str) -> np.ndarray:
    """The checks of :func:`check_state`, returning float64 ``[7]`` (gripper clipped, angles
    wrapped), or PlanInputError."""
    values = np.array(_real_array(state, where))  # a copy: the caller's array is not changed
    if values.ndim != 1 or values.shape[0] != STATE_DIM:
        raise PlanInputError(
            f"{where} must have 7 entries [x, y, z, roll, pitch, yaw, gripper], "
            f"got shape {tuple(values.shape)}"
        )
    if not np.all(np.isfinite(values)):
        raise PlanInputError(f"{where} contains NaN or inf: {values.tolist()}")
    if np.abs(values[POS]).max() > MAX_POSITION_M:
        raise PlanInputError(
            f"{where} position {values[POS].tolist()} is more than {MAX_POSITION_M:g} m from the "
            f"robot base; positions are in metres (not millimetres)"
        )
    if not bool(torch.isfinite(torch.from_numpy(values).to(torch.float32)).all()):
        raise PlanInputError(f"{where} has values beyond float32 range: {values.tolist()}")
    gripper = values[GRIPPER]
    if not -GRIPPER_TOLERANCE <= gripper <= 1.0 + GRIPPER_TOLERANCE:
        raise PlanInputError(
            f"{where} gripper closedness {gripper:g} is outside [0, 1] (0 = open, 1 = closed)"
        )
    values[GRIPPER] = min(max(gripper, 0.0), 1.0)
    angles = values[ROT]
    if np.abs(angles).max() > MAX_ANGLE_RAD:
        raise PlanInputError(
            f"{where} angles {angles.tolist()} go beyond ±{MAX_ANGLE_RAD:g} rad; they are "
            f"radians (roll, pitch, yaw)"
        )
    values[ROT] = np.where(np.abs(angles) > np.pi, np.angle(np.exp(1j * angles)), angles)
    return values


def split_observation(obs: Any, where: str, state_required: bool) -> tuple[Any, Any]:
    """(image, state or None) from a mapping ``{"image", "state"}`` or a bare image."""
    if isinstance(obs, Mapping):
        if "image" not in obs:
            raise PlanInputError(f"{where} has no 'image' key (keys: {sorted(map(str, obs))})")
        if state_required and "state" not in obs:
            raise PlanInputError(f"{where} has no 'state' key (keys: {sorted(map(str, obs))})")
        state = obs.get("state")
        if state_required and state is None:
            raise PlanInputError(f"{where}['state'] is None; it must be 7 numbers")
        image = check_image(obs["image"], f"{where}['image']")
        return image, None if state is None else check_state(state, f"{where}['state']")
    if state_required:
        raise PlanInputError(
            f"{where} must be a dict with 'image' and 'state', got {type(obs).__name__}"
        )
    return check_image(obs, where), None


def content_key(image: np.ndarray | torch.Tensor, state: torch.Tensor | None) -> str:
    """Hash of a goal's pixels (and state): equal content, equal key."""
    pixels = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16)
    digest.update(str(pixels.shape).encode())
    if state is not None:
        digest.update(state.numpy().tobytes())
    return digest.hexdigest()
