"""``FrankaTableEnv``: the Gymnasium environment that joins a simulator backend (physics and
camera) with a task (goal sampler, success test). Actions are 7-D end-effector deltas that pass
through ``robots.franka.SafetyFilter`` before the backend executes them.
"""

from __future__ import annotations

import reprlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from robots.franka import ACTION_DIM, HOME_QPOS, STATE_DIM, FrankaLimits, SafetyFilter
from sim.backend import Backend, finger_joint_from_closedness, make_backend
from sim.scene import check_cameras
from sim.tasks import Scene, Task, make_task

Observation = dict[str, np.ndarray]


class ActionError(ValueError):
    """An action that is not 7 finite real numbers (wrong type, shape or dtype, NaN or inf)."""


def check_action(action: Any) -> np.ndarray:
    """``action`` (numpy, torch or a sequence of 7 real numbers) as float64 ``[7]``.

    Raises:
        ActionError: not numbers, bools or complex numbers, wrong shape, NaN or inf.
    """
    if isinstance(action, torch.Tensor):
        if action.dtype == torch.bool or action.is_complex():
            raise ActionError(
                f"action must be {ACTION_DIM} numbers (ints or floats), got dtype {action.dtype}"
            )
        action = action.detach().to("cpu", torch.float64).numpy()
    try:
        array = np.asarray(action)
    except (TypeError, ValueError) as error:  # ragged sequences
        raise ActionError(
            f"action must be {ACTION_DIM} numbers, got {reprlib.repr(action)}"
        ) from error
    if array.dtype.kind not in "iuf":
        raise ActionError(
            f"action must be {ACTION_DIM} numbers (ints or floats), got {reprlib.repr(action)} "
            f"(dtype {array.dtype})"
        )
    if array.shape != (ACTION_DIM,):
        raise ActionError(f"action must have shape ({ACTION_DIM},), got {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ActionError(f"action contains NaN or inf: {array.tolist()}")
    return array


class EnvArgumentError(ValueError):
    """A task, image size or seed that ``FrankaTableEnv`` cannot use (the message names it)."""


# Largest camera image side: the planner's ``MAX_IMAGE_SIDE`` (sim must not import planner).
MAX_IMAGE_SIZE = 4096
MIN_IMAGE_SIZE = 16


def check_env_args(task: Any, image_size: Any, seed: Any) -> None:
    """Refuse a task that is not a name or a ``Task``, an image size that is not an int in
    ``[MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]`` and a seed that is not an int (or None).

    Raises:
        EnvArgumentError: one line naming the argument, the value and what is accepted.
    """
    if not isinstance(task, str | Task):
        raise EnvArgumentError(
            f"task must be a task name (reach, push, grasp, pick_place) or a sim.tasks.Task, "
            f"got {reprlib.repr(task)} ({type(task).__name__})"
        )
    if not _is_int(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise EnvArgumentError(
            f"image_size must be an int number of pixels in [{MIN_IMAGE_SIZE}, "
            f"{MAX_IMAGE_SIZE}], got {reprlib.repr(image_size)} ({type(image_size).__name__})"
        )
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise EnvArgumentError(
            f"seed must be a non-negative int or None, got {reprlib.repr(seed)} "
            f"({type(seed).__name__})"
        )


def _is_int(value: Any) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def home_qpos() -> np.ndarray:
    """The reset joint vector ``[9]``: ``robots.franka.HOME_QPOS`` with the fingers open."""
    return np.array([*HOME_QPOS, *(2 * [finger_joint_from_closedness(0.0)])], dtype=np.float64)


class FrankaTableEnv(gym.Env):
    """Franka Panda + table + 5 cm cube with an exterior camera (and optionally a wrist one).

    Observation: ``{"image": uint8 [H, W, 3], "state": float32 [7], "qpos": float32 [9]}``;
    W = H x the number of ``cameras`` (the views side by side; ``("exterior",)`` by default).
    Action: float ``[7]`` delta ``[dx, dy, dz, droll, dpitch, dyaw, dgripper]`` (robots.franka
    layout); huge values are clipped by the safety filter, NaN or a wrong shape raise
    :class:`ActionError`. Episodes are truncated after the task's ``episode_length`` steps and
    never terminated; ``info`` carries ``success`` and ``distance``. Reward is ``-distance``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "reach",
        backend: str | Backend = "mujoco",
        image_size: int = 256,
        seed: int | None = None,
        limits: FrankaLimits | None = None,
        render_mode: str | None = "rgb_array",
        task_overrides: list[str] | None = None,
        cameras: tuple[str, ...] | str = ("exterior",),
    ) -> None:
        check_env_args(task, image_size, seed)
        image_size = int(image_size)
        self.task = make_task(task, task_overrides) if isinstance(task, str) else task
        if isinstance(backend, str):
            backend = make_backend(backend, image_size, cameras=check_cameras(cameras))
        self.backend = backend
        self.cameras = tuple(getattr(backend, "cameras", ("exterior",)))
        self.image_size = image_size
        self.render_mode = render_mode
        self.safety = SafetyFilter(limits)
        step = self.safety.limits.step
        high = np.array([step.translation] * 3 + [step.rotation] * 3 + [step.gripper], np.float32)
        self.action_space = spaces.Box(-high, high, dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(
                    0, 255, (image_size, image_size * len(self.cameras), 3), dtype=np.uint8
                ),
                "state": spaces.Box(-4.0, 4.0, (STATE_DIM,), dtype=np.float32),
                "qpos": spaces.Box(-4.0, 4.0, (9,), dtype=np.float32),
            }
        )
        self.episode_length = self.task.config.episode_length
        self.steps = -1  # -1: reset() not called yet
        self._seed = None if seed is None else int(seed)

    # -- Gymnasium API -------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Put the arm at home, sample a new goal and place the cube; returns (obs, info).

        Raises:
            EnvArgumentError: ``seed`` is not a non-negative int (or None).
        """
        check_env_args(self.task, self.image_size, seed)
        seed = None if seed is None else int(seed)
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        super().reset(seed=seed)
        self.backend.reset(home_qpos())
        self.task.sample(self.np_random, self.backend.ee_state())
        self.task.setup(self.backend)
        self.steps = 0
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Execute one 0.25 s control step of the delta ``action [7]``.

        Raises:
            ActionError: malformed action; the arm, the step count and the episode are as before.
        """
        if self.steps < 0:
            raise RuntimeError("call reset() before step()")
        self.backend.move_ee(self.safe_target(action))
        self.steps += 1
        info = self._info()
        truncated = self.steps >= self.episode_length
        return self._observation(), -info["distance"], False, truncated, info

    def render(self) -> np.ndarray:
        """The current camera image, uint8 ``[H, W, 3]``."""
        return self.backend.render()

    def close(self) -> None:
        self.backend.close()

    # -- goals ---------------------------------------------------------------------------------

    def safe_target(self, action: np.ndarray) -> np.ndarray:
        """Validate ``action [7]`` and return the safety-filtered absolute TCP target ``[7]``.

        Raises:
            ActionError: see :func:`check_action`; nothing has moved when it is raised.
        """
        action = check_action(action)
        state = torch.from_numpy(np.asarray(self.backend.ee_state(), dtype=np.float64))
        return self.safety.target(state, torch.from_numpy(action)).numpy()

    def goal(self) -> Observation:
        """The goal observation ``{"image", "state", "qpos"}`` of the current episode."""
        return self.render_scene(self.task.goal_scene())

    def subgoals(self) -> list[Observation]:
        """Observations of the task's intermediate configurations (last = goal); [] if none."""
        return [self.render_scene(scene) for scene in self.task.subgoal_scenes()]

    def render_scene(self, scene: Scene) -> Observation:
        """Observation of ``scene`` (arm IK'd there, cube placed); the live state is restored."""
        if self.steps < 0:
            raise RuntimeError("call reset() before asking for goal images")
        snapshot = self.backend.snapshot()
        try:
            self.backend.place_ee(scene.ee)
            self.backend.set_cube_pose(scene.cube)
            observation = self._observation()
        finally:
            self.backend.restore(snapshot)
        return observation

    # -- helpers -------------------------------------------------------------------------------

    def _observation(self) -> Observation:
        return {
            "image": self.backend.render(),
            "state": self.backend.ee_state().astype(np.float32),
            "qpos": self.backend.qpos().astype(np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "success": bool(self.task.success(self.backend)),
            "distance": float(self.task.distance(self.backend)),
            "step": self.steps,
        }
