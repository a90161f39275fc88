"""Scripted experts: privileged-state policies for every task (data collection and the
upper-bound baseline). Each reads the true TCP and cube poses from the env's backend and returns
one 7-D delta action; the phase of a multi-stage task is inferred from the scene, so an expert can
take over mid-episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from robots.franka import pose_delta
from sim.backend import CUBE_SIZE
from sim.tasks import (
    GRASP_CLOSEDNESS,
    GRASP_HEIGHT,
    GraspTask,
    PickPlaceTask,
    PushTask,
    ReachTask,
)

MAX_STEP = 0.05  # metres per control step the expert asks for
SAFE_HEIGHT = 0.10  # TCP height for travelling over the table
OPEN, CLOSE = -1.0, 1.0  # gripper deltas


@dataclass(frozen=True)
class Tolerance:
    """How exactly the expert lines up before its next stage.

    Attributes:
        align: xy error (m) of the hand over the cube, or of the held cube over the target,
            under which it descends.
        correct_low: xy error (m) under which a misaligned hand slides sideways at its
            height (or, pushing, straight to its spot behind the cube) instead of rising to
            travel (0: it always rises; the collector's expert).
        push_lateral: sideways offset (m) from the push line under which it pushes.
        push_behind: how far behind the cube's face (m) the hand must be to push.
        release_height: how far above the target (m) the held cube may still be when the
            hand opens (a cube tilted in the fingers never gets within 4 mm).
    """

    align: float = 0.008
    correct_low: float = 0.0
    push_lateral: float = 0.012
    push_behind: float = 0.02
    release_height: float = 0.004


EXACT = Tolerance()  # the collector's expert: its demonstrations line up to 8 mm
# The relabelling expert (DAgger labels, ``jepa-mpc collect --planner``): a learner that sees
# the cube to ~1-1.5 cm cannot tell 7 mm from 12 mm, so labels that rise and re-approach above
# 8 mm but descend below it average into hovering. These line up to what the gripper forgives
# (fingers open 8 cm around a 5 cm cube) and correct small errors sideways.
LEARNER = Tolerance(
    align=0.015, correct_low=0.03, push_lateral=0.02, push_behind=0.015, release_height=0.012
)


def _toward(ee: np.ndarray, position: np.ndarray, orientation: np.ndarray, gripper: float):
    """Delta action [7] moving ``ee [7]`` toward ``position [3]`` with ``orientation [3]``."""
    target = np.concatenate([position, orientation, [0.0]])
    action = pose_delta(torch.from_numpy(ee), torch.from_numpy(target)).numpy()
    norm = np.linalg.norm(action[:3])
    if norm > MAX_STEP:
        action[:3] *= MAX_STEP / norm
    action[6] = gripper
    return action


def _travel(ee: np.ndarray, position: np.ndarray, orientation: np.ndarray, gripper: float):
    """Like :func:`_toward` but rises to ``SAFE_HEIGHT`` before crossing the table."""
    far = np.linalg.norm(ee[:2] - position[:2]) > 0.02
    height = max(position[2], SAFE_HEIGHT)
    if far and ee[2] < height - 0.02:
        return _toward(ee, np.array([*ee[:2], height]), orientation, gripper)
    if far:
        return _toward(ee, np.array([*position[:2], height]), orientation, gripper)
    return _toward(ee, position, orientation, gripper)


def _is_held(ee: np.ndarray, cube: np.ndarray) -> bool:
    """Cube between the fingers and the fingers closed on it."""
    return bool(np.linalg.norm(cube - ee[:3]) < 0.02 and ee[6] > GRASP_CLOSEDNESS - 0.05)


def reach_action(task: ReachTask, ee: np.ndarray, cube: np.ndarray) -> np.ndarray:
    return _toward(ee, task.target, task.home[3:6], OPEN)


def pick_action(
    task: GraspTask,
    ee: np.ndarray,
    cube: np.ndarray,
    place: bool,
    tolerance: Tolerance = EXACT,
) -> np.ndarray:
    """Hover over the cube, descend, close, lift; with ``place`` carry it to the target."""
    orientation = task.home[3:6]
    held = _is_held(ee, cube)
    if place and np.linalg.norm(cube - task.target) < 0.015 and not held:
        above = task.target + np.array([0.0, 0.0, task.config.hover_height])
        return _toward(ee, above, orientation, OPEN)  # placed: release and back off
    if held and not place:
        return _toward(ee, task.target + [0.0, 0.0, GRASP_HEIGHT], orientation, CLOSE)
    if held:
        carry_height = task.config.lift_height + CUBE_SIZE / 2
        miss = task.target[:2] - cube[:2]
        if np.linalg.norm(miss) > tolerance.align:
            if np.linalg.norm(miss) <= tolerance.correct_low:
                return _toward(ee, np.array([*(ee[:2] + miss), ee[2]]), orientation, CLOSE)
            return _travel(ee, np.array([*task.target[:2], carry_height]), orientation, CLOSE)
        if cube[2] > task.target[2] + tolerance.release_height:
            return _toward(ee, task.target + [0.0, 0.0, GRASP_HEIGHT], orientation, CLOSE)
        return _toward(ee, ee[:3], orientation, OPEN)
    grasp_point = cube[:3] + np.array([0.0, 0.0, GRASP_HEIGHT])
    miss = np.linalg.norm(ee[:2] - cube[:2])
    if miss > tolerance.align:
        if miss <= tolerance.correct_low:
            above = max(float(ee[2]), grasp_point[2] + 0.02)
            return _toward(ee, np.array([*grasp_point[:2], above]), orientation, OPEN)
        return _travel(ee, grasp_point + [0.0, 0.0, 0.08], orientation, OPEN)
    if ee[2] > grasp_point[2] + 0.004 and ee[6] < 0.2:
        return _toward(ee, grasp_point, orientation, OPEN)
    return _toward(ee, grasp_point, orientation, CLOSE)


def push_action(
    task: PushTask, ee: np.ndarray, cube: np.ndarray, tolerance: Tolerance = EXACT
) -> np.ndarray:
    """Get behind the cube on the line to the target, lower, and push it along that line."""
    orientation = task.home[3:6]
    offset = task.target[:2] - cube[:2]
    direction = offset / max(float(np.linalg.norm(offset)), 1e-9)
    relative = ee[:2] - cube[:2]
    along = float(relative @ direction)
    lateral = float(relative @ np.array([-direction[1], direction[0]]))
    behind = cube[:2] - direction * (CUBE_SIZE / 2 + 0.03)
    lined_up = abs(lateral) < tolerance.push_lateral
    if lined_up and -0.075 < along < -tolerance.push_behind and ee[2] < 0.05:
        goal = task.target[:2] - direction * (CUBE_SIZE / 2 + 0.02)
        return _toward(ee, np.array([*goal, 0.03]), orientation, CLOSE)
    if np.linalg.norm(ee[:2] - behind) > 0.01:
        if np.linalg.norm(ee[:2] - behind) <= tolerance.correct_low:
            return _toward(ee, np.array([*behind, 0.03]), orientation, CLOSE)  # no rise
        return _travel(ee, np.array([*behind, 0.03]), orientation, CLOSE)
    return _toward(ee, np.array([*behind, 0.03]), orientation, CLOSE)


def expert_action(
    env,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    tolerance: Tolerance = EXACT,
) -> np.ndarray:
    """The scripted expert's next action [7] (float32) for ``env`` (a FrankaTableEnv or wrapper).

    Args:
        env: the environment; its ``unwrapped`` backend and task give the true state.
        noise: std of Gaussian noise added to the translation, as a fraction of ``MAX_STEP``
            (0 = the clean expert); diversifies collected data.
        rng: random generator for the noise (default: a fresh unseeded one).
        tolerance: how exactly it lines up (``EXACT``: the demonstrations; ``LEARNER``: the
            relabelling expert of DAgger data).
    """
    base = env.unwrapped
    task, ee, cube = base.task, base.backend.ee_state(), base.backend.cube_pose()[:3]
    if isinstance(task, PickPlaceTask):
        action = pick_action(task, ee, cube, True, tolerance)
    elif isinstance(task, GraspTask):
        action = pick_action(task, ee, cube, False, tolerance)
    elif isinstance(task, PushTask):
        action = push_action(task, ee, cube, tolerance)
    elif isinstance(task, ReachTask):
        action = reach_action(task, ee, cube)
    else:
        raise ValueError(f"no scripted expert for task {type(task).__name__}")
    if noise > 0.0:
        rng = rng or np.random.default_rng()
        action[:3] += rng.normal(0.0, noise * MAX_STEP, size=3)
    return action.astype(np.float32)
