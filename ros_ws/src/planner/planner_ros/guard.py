"""The last gate before a command leaves ``goal_planner``. Every target, planned or hold, must be
7 finite numbers, inside the workspace box, and within one step's limits (translation, rotation,
gripper) of both the last commanded target (the *anchor*) and the measured arm pose; what fails
is not sent. A planned target is first bounded against both; a hold is the measured pose
projected into the box (keeping the last commanded gripper), else the anchor, else nothing.

The anchor is dropped (the next command is bounded by the measured pose only) when the operator
re-enables the node (``~/enable``) and, if ``resync_s`` > 0, after the arm has stayed more than
a step from it for ``resync_s`` seconds (the sim's ``~/reset`` moves the arm home at once).
"""

from __future__ import annotations

import numpy as np
import torch

from planner_ros.streams import rotation_angle
from robots.franka import FrankaLimits, SafetyFilter, pose_delta

TOLERANCE = 1e-6  # metres / radians of float slack in the checks


class CommandGuard:
    """Decides what may be commanded; keeps the anchor (see the module docstring).

    Not thread-safe: the node calls it under its publishing lock.
    """

    def __init__(self, limits: FrankaLimits, resync_s: float = 0.0) -> None:
        self.limits = limits
        self.resync_s = resync_s
        self._filter = SafetyFilter(limits)
        self.anchor: np.ndarray | None = None  # [7] the last commanded target
        self.holding = False  # the anchor is a hold target (latched while it stays valid)
        self.reanchors = 0
        self._far_since: float | None = None

    # -- checks ---------------------------------------------------------------------------------

    def outside_box(self, position: np.ndarray) -> float:
        """Distance (m) of ``position`` [3] from the workspace box (0 inside)."""
        lower, upper = np.array(self.limits.workspace.lower), np.array(self.limits.workspace.upper)
        return float(np.linalg.norm(position - np.clip(position, lower, upper)))

    def step_problem(self, target: np.ndarray, reference: np.ndarray, name: str) -> str:
        """Why ``target`` [7] is more than one step from ``reference`` [7] ('' if it is not)."""
        step = self.limits.step
        moved = float(np.linalg.norm(target[:3] - reference[:3]))
        if moved > step.translation + TOLERANCE:
            return f"it is {moved:.4f} m from {name} (> one step, {step.translation:g} m)"
        turned = rotation_angle(target[3:6], reference[3:6])
        if turned > step.rotation + TOLERANCE:
            return f"it turns {turned:.4f} rad from {name} (> one step, {step.rotation:g} rad)"
        if abs(target[6] - np.clip(reference[6], 0.0, 1.0)) > step.gripper + TOLERANCE:
            return f"its gripper command is more than {step.gripper:g} from {name}"
        return ""

    def why_unsafe(self, target: np.ndarray, state: np.ndarray | None) -> str:
        """Why ``target`` [7] must not be commanded with the arm measured at ``state`` [7]
        ('' when it may be)."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (7,) or not np.all(np.isfinite(target)):
            return "it is not 7 finite numbers"
        outside = self.outside_box(target[:3])
        if outside > TOLERANCE:
            return f"it is {outside:.4f} m outside the workspace box"
        if not 0.0 <= target[6] <= 1.0:
            return f"its gripper command {target[6]:g} is outside [0, 1]"
        if self.anchor is not None:
            problem = self.step_problem(target, self.anchor, "the last commanded target")
            if problem:
                return problem
        if state is not None:
            return self.step_problem(target, np.asarray(state, np.float64), "the measured pose")
        return ""

    # -- what to command ------------------------------------------------------------------------

    def bound(self, target: np.ndarray, state: np.ndarray) -> np.ndarray:
        """A planned ``target`` [7] limited (``SafetyFilter``) to one step from the measured
        ``state`` [7], then to one step from the anchor; check it with :meth:`why_unsafe`."""
        bounded = self._step_toward(np.asarray(state, np.float64), target)
        if self.anchor is not None:
            bounded = self._step_toward(self.anchor, bounded)
        return bounded

    def _step_toward(self, start: np.ndarray, target: np.ndarray) -> np.ndarray:
        start_t = torch.from_numpy(np.asarray(start, np.float64))
        action = pose_delta(start_t, torch.from_numpy(np.asarray(target, np.float64)))
        return self._filter.target(start_t, action).numpy()

    def hold_target(self, state: np.ndarray | None) -> tuple[np.ndarray | None, str]:
        """(what to command to hold, '') or (None, why nothing may be commanded).

        Candidates in order: the latched hold (the anchor, if the last command was a hold), the
        measured pose projected into the box with the anchor's gripper, the anchor.
        """
        candidates: list[np.ndarray] = []
        if self.holding and self.anchor is not None:
            candidates.append(self.anchor)
        if state is not None:
            measured = np.array(state, dtype=np.float64)
            lower, upper = self.limits.workspace.lower, self.limits.workspace.upper
            measured[:3] = np.clip(measured[:3], lower, upper)
            if self.anchor is not None:
                measured[6] = self.anchor[6]  # keep the grip: do not open on a held object
            candidates.append(measured)
        if self.anchor is not None:
            candidates.append(self.anchor)
        if not candidates:
            return None, "no pose measured and nothing commanded yet"
        problems = []
        for candidate in candidates:
            problem = self.why_unsafe(candidate, state)
            if not problem:
                return candidate, ""
            problems.append(problem)
        return None, f"no safe hold target: {problems[-1]}"

    def commit(self, target: np.ndarray, hold: bool) -> None:
        """Record a published command as the new anchor."""
        self.anchor = np.array(target, dtype=np.float64)
        self.holding = hold

    # -- re-anchoring ---------------------------------------------------------------------------

    def arm_far(self, state: np.ndarray | None) -> str:
        """Why the measured arm is more than a step from the anchor ('' if not, or no anchor)."""
        if self.anchor is None or state is None:
            return ""
        measured = np.asarray(state, np.float64)
        return self.step_problem(measured, self.anchor, "the last commanded target")

    def update_resync(self, state: np.ndarray | None, now_s: float) -> bool:
        """Track how long the arm has been far from the anchor; drop the anchor (True) once it
        has been for ``resync_s`` (> 0)."""
        if not self.arm_far(state):
            self._far_since = None
            return False
        if self._far_since is None:
            self._far_since = now_s
        if self.resync_s > 0 and now_s - self._far_since >= self.resync_s:
            self.release()
            return True
        return False

    def release(self) -> None:
        """Drop the anchor: the next command is bounded by the measured pose only."""
        if self.anchor is not None:
            self.reanchors += 1
        self.anchor, self.holding, self._far_since = None, False, None
