"""The goal planner's view of the world between planning cycles: the latest camera image, end-
effector state and goal, written by subscription callbacks and read (as one consistent snapshot)
by the planning thread. Also reading a goal image from a file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from planner.inputs import PlanInputError, check_image


class GoalImageError(ValueError):
    """A goal image file that is missing or cannot be read as an RGB image."""


@dataclass(frozen=True)
class Snapshot:
    """One consistent copy of the inputs.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB camera image, or None before the first one.
        image_stamp_s: the image header stamp (ROS time, seconds).
        image_received: ``time.monotonic()`` when the image arrived.
        state: float64 ``[7]`` end-effector state (pose + gripper), or None.
        state_received: ``time.monotonic()`` when the pose last arrived.
        state_stamp_s: the pose header stamp; gripper_stamp_s: the gripper joint states' stamp.
        frame_id: the frame of the last pose.
        goal_image: uint8 ``[H, W, 3]`` goal image, or None.
        goal_state: float64 ``[7]`` state shown in the goal (needed by state-reading models only).
        goal_version: increments whenever the goal changes.
    """

    image: np.ndarray | None = None
    image_stamp_s: float = 0.0
    image_received: float = -np.inf
    state: np.ndarray | None = None
    state_received: float = -np.inf
    state_stamp_s: float = 0.0
    gripper_stamp_s: float = 0.0
    frame_id: str = ""
    goal_image: np.ndarray | None = None
    goal_state: np.ndarray | None = None
    goal_version: int = 0

    @property
    def inputs_stamp_s(self) -> float:
        """The oldest header stamp of the image, pose and gripper state (ROS time, seconds)."""
        return min(self.image_stamp_s, self.state_stamp_s, self.gripper_stamp_s)


class InputBuffer:
    """Thread-safe latest-value store; every setter replaces one field of the snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot()
        self._gripper = 0.0

    def snapshot(self) -> Snapshot:
        """The current inputs (immutable; arrays are not modified after being stored)."""
        with self._lock:
            return self._snapshot

    def set_image(self, image: np.ndarray, stamp_s: float) -> None:
        with self._lock:
            self._snapshot = replace(
                self._snapshot, image=image, image_stamp_s=stamp_s, image_received=time.monotonic()
            )

    def set_pose(self, state: np.ndarray, frame_id: str, stamp_s: float = 0.0) -> None:
        """Store the pose part of ``state [7]``; the gripper comes from :meth:`set_gripper`."""
        with self._lock:
            state = np.array(state, dtype=np.float64)
            state[6] = self._gripper
            self._snapshot = replace(
                self._snapshot,
                state=state,
                state_received=time.monotonic(),
                state_stamp_s=stamp_s,
                frame_id=frame_id,
            )

    def set_gripper(self, closedness: float, stamp_s: float = 0.0) -> None:
        with self._lock:
            self._gripper = float(closedness)
            state = self._snapshot.state
            if state is not None:
                state = state.copy()
                state[6] = self._gripper
            self._snapshot = replace(self._snapshot, state=state, gripper_stamp_s=stamp_s)

    def wait_newer(
        self, after_s: float, timeout_s: float, stop: threading.Event
    ) -> tuple[Snapshot, bool]:
        """Wait (up to ``timeout_s``, or until ``stop`` is set) for a snapshot whose image, pose
        and gripper state are all stamped after ``after_s``; returns (latest snapshot, found)."""
        deadline = time.monotonic() + timeout_s
        snap = self.snapshot()
        while snap.inputs_stamp_s <= after_s:
            if time.monotonic() >= deadline or stop.wait(0.005):
                return self.snapshot(), False
            snap = self.snapshot()
        return snap, True

    def set_goal(
        self, image: np.ndarray, state: np.ndarray | None = None, keep_state=False
    ) -> None:
        """Replace the goal image (and its state; ``keep_state`` keeps the current goal state)."""
        with self._lock:
            goal_state = self._snapshot.goal_state if keep_state else state
            self._snapshot = replace(
                self._snapshot,
                goal_image=image,
                goal_state=goal_state,
                goal_version=self._snapshot.goal_version + 1,
            )

    def set_goal_state(self, state: np.ndarray) -> None:
        with self._lock:
            self._snapshot = replace(
                self._snapshot,
                goal_state=np.asarray(state, dtype=np.float64),
                goal_version=self._snapshot.goal_version + 1,
            )


def read_goal_image(path: str) -> np.ndarray:
    """Read an image file as uint8 RGB ``[H, W, 3]`` (grey is replicated, alpha dropped).

    Raises:
        GoalImageError: missing file, unreadable, not 8-bit grey/RGB/RGBA, or a size the
            planner refuses (``planner.inputs.check_image``: 8..4096 px a side).
    """
    import imageio.v3 as iio

    file = Path(path).expanduser()
    if not file.is_file():
        raise GoalImageError(f"goal image {file} not found")
    try:
        image = np.asarray(iio.imread(file))
    except (OSError, ValueError) as error:
        raise GoalImageError(f"goal image {file} could not be read: {error}") from error
    if image.dtype != np.uint8:
        raise GoalImageError(f"goal image {file} must be 8-bit, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise GoalImageError(f"goal image {file} must be grey, RGB or RGBA, got {image.shape}")
    image = np.ascontiguousarray(image[..., :3])
    try:
        return check_image(image, f"goal image {file}")  # the planner's own rules (size)
    except PlanInputError as error:
        raise GoalImageError(str(error)) from None
