"""The physics + rendering engine interface every simulator backend implements, and the registry
that maps backend names to implementations (imported lazily, so a missing engine only fails
when it is asked for).

How to write a backend (e.g. ``sim/pybullet_backend.py``, class ``PybulletBackend``)
------------------------------------------------------------------------------------
Implement every method of :class:`Backend` below. The contract:

* **Frames and units.** Everything is in the *robot base frame* (x forward, y left, z up,
  metres), with the table top at z = 0 and the robot base at the origin. Poses use the 7-D layout
  of ``robots.franka``: ``[x, y, z, roll, pitch, yaw, gripper]`` where roll/pitch/yaw are
  extrinsic xyz Euler angles (R = Rz(yaw) Ry(pitch) Rx(roll)) of the *TCP frame* (the point
  midway between the fingertip pads; its z axis points out of the hand, so "hand pointing down"
  is roll = ±pi), and gripper is closedness 0 (fingers 8 cm apart) .. 1 (touching), computed from
  the measured finger width as ``1 - width / 0.08``.
* **Joint vector.** ``qpos()`` is float64 ``[9]``: the seven arm joints (Franka order, radians)
  followed by the two finger joints (metres, each 0 .. 0.04 = half the finger width).
* **Control step.** ``move_ee(target)`` advances physics by ``control_dt`` seconds (≈ 0.25 s,
  V-JEPA 2-AC's 4 fps) while driving the TCP toward the absolute target pose ``target [7]`` with
  differential IK (damped least squares on the engine's Jacobian) and the fingers toward the
  target closedness. The target has already passed ``robots.franka.SafetyFilter`` (the env does
  that); the backend must not assume it is reachable in one step, only move toward it.
* **Scene.** One 5 cm cube (free body). ``cube_pose()`` returns float64 ``[7]``
  ``[x, y, z, qw, qx, qy, qz]`` of its centre; ``set_cube_pose(position [3], quat [4] | None)``
  teleports it (zero velocity). The table top is z = 0, so a resting cube has z = 0.025.
* **Reset / kinematic placement.** ``reset(qpos [9])`` puts the arm at the joint vector with zero
  velocity and the actuators holding it there. ``place_ee(target [7])`` solves IK from the
  current configuration and *teleports* the arm there (no physics), with the fingers at the
  target closedness, and holds it; it returns the position error in metres. It is used to put the
  scene in a goal configuration for rendering goal images.
* **Snapshot / restore.** ``snapshot()`` returns an opaque object holding the complete simulator
  state (joints, velocities, actuator targets, cube, time); ``restore(snapshot)`` puts it back
  *exactly*, so that stepping afterwards gives bit-identical results to never having left.
* **Rendering.** ``render()`` returns a uint8 ``[H, W, 3]`` RGB image (H = W = ``image_size``)
  from one fixed exterior camera, looking at arm and table from the front-side (DROID style), so
  that the arm and the cube are clearly visible. Must work headless. A backend may also render a
  wrist camera (``cameras=("exterior", "wrist")``: the views side by side, W = 2 H); MuJoCo
  does. ``close()`` frees renderers and contexts; it may be called twice.

Register the class in :data:`BACKENDS` (already done for ``pybullet``) and ``sim.make(task,
backend="pybullet")`` will use it; ``tests/test_sim_*.py`` show the checks a backend must pass.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

# TCP frame: fingertip pads 8 cm apart when fully open.
MAX_FINGER_WIDTH = 0.08
CUBE_SIZE = 0.05  # edge length, metres
CONTROL_DT = 0.25  # seconds per control step (4 fps like V-JEPA 2-AC)

# name -> "module:Class", imported on first use.
BACKENDS: dict[str, str] = {
    "mujoco": "sim.mujoco_backend:MujocoBackend",
    "pybullet": "sim.pybullet_backend:PybulletBackend",
}


class UnknownBackendError(ValueError):
    """A backend name that is not in :data:`BACKENDS`."""


@runtime_checkable
class Backend(Protocol):
    """A Franka + table + cube simulator with one fixed camera (see the module docstring)."""

    image_size: int
    control_dt: float
    cameras: tuple[str, ...]

    def reset(self, qpos: np.ndarray) -> None:
        """Put the arm at joint vector ``qpos [9]`` (zero velocity, actuators holding it)."""
        ...

    def ee_state(self) -> np.ndarray:
        """The TCP state ``[7]`` float64 in the robot base frame (layout of robots.franka)."""
        ...

    def qpos(self) -> np.ndarray:
        """Joint positions ``[9]`` float64: 7 arm joints then the 2 finger joints."""
        ...

    def move_ee(self, target: np.ndarray) -> None:
        """Advance one control step driving the TCP toward the absolute pose ``target [7]``."""
        ...

    def place_ee(self, target: np.ndarray) -> float:
        """Teleport the arm (IK, no physics) to ``target [7]``; return the position error (m)."""
        ...

    def cube_pose(self) -> np.ndarray:
        """The cube's centre pose ``[7]`` = ``[x, y, z, qw, qx, qy, qz]``."""
        ...

    def set_cube_pose(self, position: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Teleport the cube to ``position [3]`` with orientation ``quat [4]`` (wxyz)."""
        ...

    def render(self) -> np.ndarray:
        """RGB ``[image_size, image_size x len(cameras), 3]`` uint8, the views side by side."""
        ...

    def snapshot(self) -> Any:
        """An opaque copy of the full simulator state."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Restore a state from :meth:`snapshot` exactly."""
        ...

    def close(self) -> None:
        """Free renderers and contexts (idempotent)."""
        ...


def backend_class(name: str) -> type:
    """Import and return the backend class registered under ``name``.

    Raises:
        UnknownBackendError: ``name`` is not registered (the message lists the known ones).
        ImportError: the backend's engine is not installed.
    """
    if name not in BACKENDS:
        raise UnknownBackendError(
            f"unknown simulator backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}"
        )
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_backend(name: str, image_size: int = 256, **kwargs: Any) -> Backend:
    """Construct the backend registered under ``name`` with the given image size."""
    return backend_class(name)(image_size=image_size, **kwargs)


def closedness_from_width(width: float) -> float:
    """Gripper closedness 0 (open) .. 1 (closed) from the finger width in metres."""
    return float(np.clip(1.0 - width / MAX_FINGER_WIDTH, 0.0, 1.0))


def finger_joint_from_closedness(closedness: float) -> float:
    """Each finger joint's position (m, 0 .. 0.04) that gives ``closedness``."""
    return float(np.clip(1.0 - closedness, 0.0, 1.0)) * MAX_FINGER_WIDTH / 2.0
