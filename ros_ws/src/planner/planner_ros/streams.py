"""What ``goal_planner`` accepts from its input topics, decided message by message: header
stamps that are set, in order, not older than the watchdog and not from the future; poses the
arm could have reached since the previous one; images, states and goals by the planner's own
rules (``planner.inputs``). Every rejection is counted by topic and reason for ``/diagnostics``,
and logged at most once per ``LOG_PERIOD_S`` per reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState

from planner.inputs import PlanInputError, check_image, state_values
from planner_ros.conversions import (
    MessageError,
    gripper_closedness,
    image_to_array,
    pose_to_state,
    stamp_seconds,
)
from planner_ros.inputs import Snapshot
from robots.franka import FrankaLimits, SpeedLimits, Workspace, euler_to_matrix, matrix_to_rotvec

LOG_PERIOD_S = 5.0  # a rejection reason is logged at most once per this many seconds
KINDS = ("image", "pose", "gripper", "goal")  # the counted input streams
NAMES = {"image": "camera image", "pose": "pose", "gripper": "gripper state", "goal": "goal"}


@dataclass(frozen=True)
class Rejection:
    """Why one message was not accepted: ``reason`` is a short key for the counters
    (``stale``, ``future``, ``order``, ``unstamped``, ``jump``, ``frame``, ``malformed``,
    ``unreachable``); ``detail`` is the one-line explanation for the log."""

    reason: str
    detail: str


class InputRejected(ValueError):
    """Raised by the message checks below; carries the :class:`Rejection`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


class RejectionCounter:
    """Thread-safe counts of rejected messages per stream (``KINDS``) and reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}  # "kind/reason" -> count
        self._logged_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.last = ""  # the latest rejection, "kind: detail"
        self.last_by_kind: dict[str, tuple[float, str]] = {}  # kind -> (monotonic, detail)

    def add(self, kind: str, rejection: Rejection) -> str | None:
        """Count one rejection; returns the log line to emit now, or None (throttled)."""
        key = f"{kind}/{rejection.reason}"
        now = time.monotonic()
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self.last = f"{kind}: {rejection.detail}"
            self.last_by_kind[kind] = (now, rejection.detail)
            if now - self._logged_at.get(key, -np.inf) < LOG_PERIOD_S:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._logged_at[key] = now
            skipped = self._suppressed.pop(key, 0)
        more = f" ({skipped} more of these in the last {LOG_PERIOD_S:g} s)" if skipped else ""
        return f"rejecting {NAMES.get(kind, kind)}: {rejection.detail}{more}"

    def totals(self) -> dict[str, int]:
        """Rejections per stream kind (every kind present, 0 when none)."""
        with self._lock:
            counts = dict(self._counts)
        totals = dict.fromkeys(KINDS, 0)
        for key, count in counts.items():
            kind = key.split("/", 1)[0]
            totals[kind] = totals.get(kind, 0) + count
        return totals

    def by_reason(self) -> dict[str, int]:
        """Rejections per ``"kind/reason"``."""
        with self._lock:
            return dict(sorted(self._counts.items()))


class StampOrder:
    """The header-stamp checks of one input stream: set, not older than ``max_age_s``, not
    more than ``skew_s`` ahead of this node's clock, and later than the last accepted one."""

    def __init__(self) -> None:
        self.previous_s: float | None = None

    def check(self, stamp_s: float, now_s: float, max_age_s: float, skew_s: float) -> None:
        """Raise InputRejected when the stamp fails a check (nothing is recorded)."""
        if stamp_s == 0.0:
            raise InputRejected("unstamped", "header.stamp is 0 (unset); stamp every message")
        age = now_s - stamp_s
        if age > max_age_s:
            raise InputRejected("stale", f"stamped {age:.3f} s ago (> watchdog_s {max_age_s:g})")
        if age < -skew_s:
            raise InputRejected(
                "future",
                f"stamped {-age:.3f} s in the future (> clock_skew_s {skew_s:g}: sync the clocks)",
            )
        if self.previous_s is not None and stamp_s <= self.previous_s:
            raise InputRejected(
                "order",
                f"stamp {stamp_s:.6f} is not after the previous one {self.previous_s:.6f}",
            )


def stale_reason(snap: Snapshot, watchdog_s: float, rejections: RejectionCounter) -> str:
    """Why the inputs of ``snap`` are too old to act on ('' if fresh): the camera image or the
    pose arrived more than ``watchdog_s`` ago (with the latest rejection of that stream, if
    newer messages were rejected)."""
    now = time.monotonic()
    if snap.image is None:
        return "no camera image yet" + _rejection_note(rejections, "image", -np.inf)
    for name, kind, received in (
        ("camera image", "image", snap.image_received),
        ("state", "pose", snap.state_received),
    ):
        if now - received > watchdog_s:
            age = f"{name} is {now - received:.2f} s old (> watchdog_s {watchdog_s:g})"
            return age + _rejection_note(rejections, kind, received)
    return ""


def _rejection_note(rejections: RejectionCounter, kind: str, since: float) -> str:
    rejected, detail = rejections.last_by_kind.get(kind, (-np.inf, ""))
    return f"; newer ones rejected: {detail}" if rejected > since else ""


def rotation_angle(euler_a: np.ndarray, euler_b: np.ndarray) -> float:
    """Angle (rad) of the rotation between two extrinsic xyz Euler orientations ``[3]``."""
    a = euler_to_matrix(torch.from_numpy(np.asarray(euler_a, np.float64)))
    b = euler_to_matrix(torch.from_numpy(np.asarray(euler_b, np.float64)))
    return float(matrix_to_rotvec(a @ b.transpose(-1, -2)).norm())


class PoseContinuity:
    """The last accepted pose; a pose further from it than the arm can move (``SpeedLimits``)
    in the time between their stamps, plus measurement noise, is not the arm's."""

    def __init__(self, speed: SpeedLimits) -> None:
        self.speed = speed
        self.state: np.ndarray | None = None
        self.stamp_s = 0.0

    def check(self, state: np.ndarray, stamp_s: float) -> None:
        """Raise InputRejected(``jump``) when ``state`` [7] is out of the arm's reach since the
        last accepted pose (call after the stamp order check: ``stamp_s`` is later)."""
        if self.state is None:
            return
        seconds = max(stamp_s - self.stamp_s, 0.0)
        moved = float(np.linalg.norm(state[:3] - self.state[:3]))
        reach = self.speed.translation * seconds + self.speed.noise_translation
        if moved > reach:
            raise InputRejected(
                "jump",
                f"the pose moved {moved:.3f} m in {seconds:.3f} s since the last accepted one "
                f"(the arm moves at most {self.speed.translation:g} m/s): not the arm's",
            )
        turned = rotation_angle(state[3:6], self.state[3:6])
        if turned > self.speed.rotation * seconds + self.speed.noise_rotation:
            raise InputRejected(
                "jump",
                f"the pose turned {turned:.3f} rad in {seconds:.3f} s since the last accepted "
                f"one (the arm turns at most {self.speed.rotation:g} rad/s): not the arm's",
            )

    def accept(self, state: np.ndarray, stamp_s: float) -> None:
        self.state, self.stamp_s = np.array(state, dtype=np.float64), stamp_s


def checked_image(msg: Image, where: str) -> np.ndarray:
    """Decode an image message and apply the planner's image rules (size, dtype).

    Raises:
        InputRejected(``malformed``): what ``image_to_array`` or ``check_image`` refuses.
    """
    try:
        return np.asarray(check_image(image_to_array(msg), where))
    except (MessageError, PlanInputError) as error:
        raise InputRejected("malformed", str(error)) from None


def checked_state(state: np.ndarray, where: str) -> np.ndarray:
    """The planner's state rules (``planner.inputs.state_values``: finite, metres, gripper in
    [0, 1], angles wrapped): float64 ``[7]``.

    Raises:
        InputRejected(``malformed``): what ``planner.inputs.check_state`` refuses.
    """
    try:
        return state_values(state, where)
    except PlanInputError as error:
        raise InputRejected("malformed", str(error)) from None


def checked_goal_state(values: object, workspace: Workspace, tolerance: float = 1e-3) -> np.ndarray:
    """A goal state: the planner's state rules, and a position inside the workspace box (a goal
    outside it cannot be reached: the safety filter keeps the arm in the box).

    Raises:
        InputRejected(``malformed`` | ``unreachable``).
    """
    state = checked_state(np.asarray(values, dtype=np.float64), "goal state")
    lower, upper = np.array(workspace.lower), np.array(workspace.upper)
    outside = float(np.linalg.norm(state[:3] - np.clip(state[:3], lower, upper)))
    if outside > tolerance:
        raise InputRejected(
            "unreachable",
            f"goal state position {np.round(state[:3], 4).tolist()} is {outside:.3f} m outside "
            f"the workspace box {list(workspace.lower)}..{list(workspace.upper)}",
        )
    return state


class InputChecks:
    """The checks of ``goal_planner``'s input messages, stream by stream. Each method returns
    the accepted values (and records the message as the stream's latest) or raises
    InputRejected without recording anything. Call from one thread (the executor's)."""

    def __init__(
        self, limits: FrankaLimits, frame_id: str, now_s: Callable[[], float], max_age_s: float
    ) -> None:
        self.workspace = limits.workspace
        self.frame_id = frame_id
        self.now_s = now_s
        self.max_age_s = max_age_s  # the watchdog: older stamps are rejected
        self.skew_s = 0.05  # stamps this far in the future are accepted (clock skew)
        self._orders = {kind: StampOrder() for kind in ("image", "pose", "gripper")}
        self._continuity = PoseContinuity(limits.speed)

    def _stamp(self, kind: str, msg) -> float:
        stamp = stamp_seconds(msg)
        self._orders[kind].check(stamp, self.now_s(), self.max_age_s, self.skew_s)
        return stamp

    def image(self, msg: Image) -> tuple[np.ndarray, float]:
        """(uint8 [H, W, 3] RGB, stamp) of a camera image."""
        image = checked_image(msg, "camera image")
        stamp = self._stamp("image", msg)
        self._orders["image"].previous_s = stamp
        return image, stamp

    def pose(self, msg: PoseStamped) -> tuple[np.ndarray, str, float]:
        """(state [7] with gripper 0, frame, stamp) of an end-effector pose."""
        try:
            state = checked_state(pose_to_state(msg, gripper=0.0), "end-effector pose")
        except MessageError as error:
            raise InputRejected("malformed", str(error)) from None
        frame = msg.header.frame_id or self.frame_id
        if frame != self.frame_id:
            raise InputRejected(
                "frame", f"pose in frame {frame!r}; the frame_id parameter is {self.frame_id!r}"
            )
        stamp = self._stamp("pose", msg)
        self._continuity.check(state, stamp)
        self._orders["pose"].previous_s = stamp
        self._continuity.accept(state, stamp)
        return state, frame, stamp

    def gripper(self, msg: JointState) -> tuple[float, float]:
        """(closedness 0..1, stamp) of the gripper's joint states."""
        try:
            closedness = gripper_closedness(msg)
        except MessageError as error:
            raise InputRejected("malformed", str(error)) from None
        stamp = self._stamp("gripper", msg)
        self._orders["gripper"].previous_s = stamp
        return closedness, stamp

    def goal_image(self, msg: Image) -> np.ndarray:
        """A goal image (latched: no stamp checks)."""
        return checked_image(msg, "goal image")

    def goal_state(self, values: object) -> np.ndarray:
        """A goal state [7] inside the workspace box."""
        return checked_goal_state(values, self.workspace)
