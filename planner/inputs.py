"""Checks of what enters the planner (observations and goals) and the goal-cache key: bad
input raises ``PlanInputError`` naming the problem before anything reaches the model."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from robots.franka import STATE_DIM

MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 8192


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
            f"[{MIN_IMAGE_SIDE}, {MAX_IMAGE_SIDE}]"
        )
    return image


def check_state(state: Any, where: str) -> torch.Tensor:
    """A finite end-effector state of 7 numbers -> float32 tensor [7], or PlanInputError."""
    try:
        values = torch.as_tensor(np.asarray(state, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise PlanInputError(f"{where} must be 7 numbers, got {state!r}") from error
    if values.ndim != 1 or values.shape[0] != STATE_DIM:
        raise PlanInputError(
            f"{where} must have 7 entries [x, y, z, roll, pitch, yaw, gripper], "
            f"got shape {tuple(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()):
        raise PlanInputError(f"{where} contains NaN or inf: {values.tolist()}")
    return values


def split_observation(obs: Any, where: str, state_required: bool) -> tuple[Any, Any]:
    """(image, state or None) from a dict ``{"image", "state"}`` or a bare image."""
    if isinstance(obs, dict):
        if "image" not in obs:
            raise PlanInputError(f"{where} has no 'image' key (keys: {sorted(obs)})")
        if state_required and "state" not in obs:
            raise PlanInputError(f"{where} has no 'state' key (keys: {sorted(obs)})")
        image = check_image(obs["image"], f"{where}['image']")
        state = obs.get("state")
        return image, None if state is None else check_state(state, f"{where}['state']")
    if state_required:
        raise PlanInputError(f"{where} must be a dict with 'image' and 'state', got {type(obs)}")
    return check_image(obs, where), None


def content_key(image: np.ndarray | torch.Tensor, state: torch.Tensor | None) -> str:
    """Hash of a goal's pixels (and state): equal content, equal key."""
    pixels = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
    digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16)
    digest.update(str(pixels.shape).encode())
    if state is not None:
        digest.update(state.numpy().tobytes())
    return digest.hexdigest()
