"""Backend-neutral table-top tasks: what each task samples as its goal, how the scene looks in the
goal (and subgoal) configuration, and how success and distance are measured.

A task never touches an engine directly except through the :class:`sim.backend.Backend` methods
``ee_state``, ``cube_pose`` and ``set_cube_pose``. Positions are in the robot base frame (m).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robots.config import load_config
from sim.backend import CUBE_SIZE, MAX_FINGER_WIDTH, Backend

CUBE_REST_Z = CUBE_SIZE / 2.0
# Closedness with the 5 cm cube between the fingers.
GRASP_CLOSEDNESS = 1.0 - CUBE_SIZE / MAX_FINGER_WIDTH
# TCP above the cube centre in a grasp: the fingertips (sim.hand.TCP_ABOVE_FINGERTIPS below the
# TCP) stay about 2 cm above the table.
GRASP_HEIGHT = 0.005
# A placed cube counts only when let go and resting: fingers at most this closed, the cube's
# centre within PLACED_Z_TOLERANCE of its resting height, the TCP at least BACKED_OFF away.
RELEASED_CLOSEDNESS = 0.2
PLACED_Z_TOLERANCE = 0.01
BACKED_OFF = 0.05
# Where the cube waits when a task does not use it (off the workspace, still on the table).
PARKED_CUBE = np.array([0.22, 0.50, CUBE_REST_Z])
TASK_NAMES = ("reach", "push", "grasp", "pick_place")
# Seeds at or above this are training data (``jepa-mpc collect``); evaluation uses the seeds
# below it, so no test episode is a training scene.
TRAINING_SEEDS_START = 1_000_000
# Where ``jepa-mpc bench`` starts by default: seeds 7..~1,300 were training scenes of sim-small
# v1, collected before the ranges were split.
EVALUATION_SEEDS_START = 10_000


@dataclass(frozen=True)
class TaskConfig:
    """One task's settings, read from ``configs/task/<name>.yaml``."""

    name: str = "reach"
    episode_length: int = 20  # control steps; the episode is truncated, never terminated
    success_threshold: float = 0.03  # metres
    cube_low: tuple[float, float] = (0.42, -0.15)  # x, y of the cube's start region
    cube_high: tuple[float, float] = (0.58, 0.15)
    target_low: tuple[float, float, float] = (0.35, -0.25, 0.05)  # goal region
    target_high: tuple[float, float, float] = (0.65, 0.25, 0.35)
    min_travel: float = 0.10  # smallest start-to-goal distance (m)
    max_travel: float = 0.30  # largest start-to-goal distance (m)
    lift_height: float = 0.15  # how high a grasped cube is lifted (m above the table)
    hover_height: float = 0.12  # TCP height above the cube before grasping (m)


@dataclass
class Scene:
    """A configuration to render: TCP state ``ee [7]`` and cube centre ``cube [3]``."""

    ee: np.ndarray
    cube: np.ndarray = field(default_factory=lambda: PARKED_CUBE.copy())


def load_task_config(name: str, overrides: list[str] | None = None) -> TaskConfig:
    """Read ``configs/task/<name>.yaml`` (or a YAML path) into a :class:`TaskConfig`."""
    return load_config(TaskConfig, name, group="task", overrides=overrides)


def _with(ee: np.ndarray, position: np.ndarray, gripper: float) -> np.ndarray:
    """``ee [7]`` with its position replaced and gripper closedness set."""
    state = np.array(ee, dtype=np.float64)
    state[:3] = position
    state[6] = gripper
    return state


class Task:
    """Base class: a seeded goal sampler plus success and distance on the live scene.

    After :meth:`sample`, ``cube_start [3]`` and ``target [3]`` are set; ``home [7]`` is the
    TCP state at reset (its orientation is kept in every goal configuration).
    """

    name = "task"
    uses_cube = True
    # Step shares of the stages of subgoal_scenes() (one per subgoal, summing to the default
    # episode_length); planning benchmarks scale them to the episode's length.
    subgoal_shares: tuple[int, ...] = ()

    def __init__(self, config: TaskConfig) -> None:
        self.config = config
        self.home = np.zeros(7)
        self.cube_start = PARKED_CUBE.copy()
        self.target = np.zeros(3)

    def sample(self, rng: np.random.Generator, home: np.ndarray) -> None:
        """Draw a new cube start and goal target with ``rng``; ``home [7]`` is the reset TCP."""
        self.home = np.array(home, dtype=np.float64)
        self.cube_start = self._sample_cube(rng) if self.uses_cube else PARKED_CUBE.copy()
        self.target = self._sample_target(rng)

    def setup(self, backend: Backend) -> None:
        """Put the cube at its start (the arm is already at home)."""
        backend.set_cube_pose(self.cube_start)

    def goal_scene(self) -> Scene:
        """The scene configuration the goal image shows."""
        raise NotImplementedError

    def subgoal_scenes(self) -> list[Scene]:
        """Intermediate configurations for multi-stage tasks, ending with the goal; [] if none."""
        return []

    def distance(self, backend: Backend) -> float:
        """Distance (m) of the live scene from the goal."""
        raise NotImplementedError

    def success(self, backend: Backend) -> bool:
        """Whether the live scene counts as having reached the goal."""
        return self.distance(backend) < self.config.success_threshold

    # -- sampling helpers ----------------------------------------------------------------------

    def _sample_cube(self, rng: np.random.Generator) -> np.ndarray:
        xy = rng.uniform(self.config.cube_low, self.config.cube_high)
        return np.array([xy[0], xy[1], CUBE_REST_Z])

    def _sample_table_target(self, rng: np.random.Generator) -> np.ndarray:
        """A cube position on the table, min..max travel from the start, inside target xy."""
        low, high = np.array(self.config.target_low[:2]), np.array(self.config.target_high[:2])
        for _ in range(1000):
            angle = rng.uniform(-np.pi, np.pi)
            travel = rng.uniform(self.config.min_travel, self.config.max_travel)
            xy = self.cube_start[:2] + travel * np.array([np.cos(angle), np.sin(angle)])
            if np.all(xy >= low) and np.all(xy <= high):
                return np.array([xy[0], xy[1], CUBE_REST_Z])
        raise ValueError(f"{self.name}: target region too small for the configured travel")

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _cube_position(self, backend: Backend) -> np.ndarray:
        return backend.cube_pose()[:3]


class ReachTask(Task):
    """Move the TCP to a sampled 3-D point (orientation kept, gripper open)."""

    name = "reach"
    uses_cube = False

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        for _ in range(1000):
            point = rng.uniform(self.config.target_low, self.config.target_high)
            travel = np.linalg.norm(point - self.home[:3])
            if self.config.min_travel <= travel <= self.config.max_travel:
                return point
        raise ValueError("reach: target region does not intersect the travel shell around home")

    def goal_scene(self) -> Scene:
        return Scene(ee=_with(self.home, self.target, 0.0))

    def distance(self, backend: Backend) -> float:
        return float(np.linalg.norm(backend.ee_state()[:3] - self.target))


class PushTask(Task):
    """Push the cube along the table to a sampled spot (gripper closed, cube never lifted)."""

    name = "push"
    # Above the spot behind the cube, down there, then along the line to the target (the cube
    # ahead of the hand): a straight move between the last two subgoals is the push.
    subgoal_shares = (10, 6, 24)
    PUSH_HEIGHT = 0.03  # TCP height while pushing (m)
    APPROACH_HEIGHT = 0.08  # extra height of the approach above the pushing spot (m)

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        return self._sample_table_target(rng)

    def push_direction(self) -> np.ndarray:
        """Unit xy vector ``[2]`` from the cube's start to the target."""
        delta = self.target[:2] - self.cube_start[:2]
        return delta / max(float(np.linalg.norm(delta)), 1e-9)

    def hand_behind(self, cube: np.ndarray, height: float = PUSH_HEIGHT) -> np.ndarray:
        """TCP position ``[3]`` just behind ``cube [3]`` on the push line, at ``height``."""
        behind = cube[:2] - self.push_direction() * (CUBE_SIZE / 2 + 0.035)
        return np.array([*behind, height])

    def goal_scene(self) -> Scene:
        # The hand rests just behind the pushed cube, as at the end of the push.
        hand = _with(self.home, self.hand_behind(self.target), 1.0)
        return Scene(ee=hand, cube=self.target.copy())

    def subgoal_scenes(self) -> list[Scene]:
        start = self.cube_start.copy()
        above = self.hand_behind(start, self.PUSH_HEIGHT + self.APPROACH_HEIGHT)
        return [
            Scene(ee=_with(self.home, above, 1.0), cube=start),
            Scene(ee=_with(self.home, self.hand_behind(start), 1.0), cube=start.copy()),
            self.goal_scene(),
        ]

    def distance(self, backend: Backend) -> float:
        return float(np.linalg.norm(self._cube_position(backend)[:2] - self.target[:2]))


class GraspTask(Task):
    """Grasp the cube and lift it ``lift_height`` above its start."""

    name = "grasp"
    # Above the cube, open around it, closed on it, lifted. A greedy planner needs the open
    # descent as a stage of its own: aimed straight at a closed grasp, it closes in the air.
    # The hover gets the most steps: a hand that reaches it 4-5 cm off lands a finger on the
    # cube during the descent (traced, docs/sim_small.md); the lift needs 2-3 steps.
    subgoal_shares = (13, 6, 3, 8)

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        return self.cube_start + np.array([0.0, 0.0, self.config.lift_height])

    def hover_scene(self) -> Scene:
        """Hand open above the cube at its start."""
        above = self.cube_start + np.array([0.0, 0.0, self.config.hover_height])
        return Scene(ee=_with(self.home, above, 0.0), cube=self.cube_start.copy())

    def hand_at_cube(self, cube: np.ndarray, closedness: float = GRASP_CLOSEDNESS) -> Scene:
        """Cube centred at ``cube [3]`` between the fingers (TCP ``GRASP_HEIGHT`` above it),
        the hand at ``closedness`` (holding it by default, 0 = open around it)."""
        tcp = cube + np.array([0.0, 0.0, GRASP_HEIGHT])
        return Scene(ee=_with(self.home, tcp, closedness), cube=np.array(cube, dtype=np.float64))

    def goal_scene(self) -> Scene:
        return self.hand_at_cube(self.target)

    def pick_scenes(self) -> list[Scene]:
        """The pick stages at the cube's start: hand above it, open around it, closed on it."""
        start = self.cube_start
        return [self.hover_scene(), self.hand_at_cube(start, 0.0), self.hand_at_cube(start)]

    def subgoal_scenes(self) -> list[Scene]:
        return [*self.pick_scenes(), self.goal_scene()]

    def distance(self, backend: Backend) -> float:
        return float(np.linalg.norm(self._cube_position(backend) - self.target))

    def success(self, backend: Backend) -> bool:
        # Lifted near the target and actually held (close to the TCP), not thrown up there.
        cube = self._cube_position(backend)
        held = np.linalg.norm(cube - backend.ee_state()[:3]) < 0.03
        return bool(held) and super().success(backend)


class PickPlaceTask(GraspTask):
    """Pick the cube up, carry it, and put it down at a sampled spot on the table."""

    name = "pick_place"
    # The pick stages, lifted, down at the target, open there, backed off above it. The carry
    # (lifted -> down at the target, 15-30 cm across and 15 cm down) gets the most steps.
    subgoal_shares = (12, 6, 3, 3, 14, 3, 9)

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        return self._sample_table_target(rng)

    def goal_scene(self) -> Scene:
        # Cube at the target, hand released and hovering above it.
        above = self.target + np.array([0.0, 0.0, self.config.hover_height])
        return Scene(ee=_with(self.home, above, 0.0), cube=self.target.copy())

    def subgoal_scenes(self) -> list[Scene]:
        lifted = self.cube_start + np.array([0.0, 0.0, self.config.lift_height])
        placed = [self.hand_at_cube(self.target), self.hand_at_cube(self.target, 0.0)]
        return [*self.pick_scenes(), self.hand_at_cube(lifted), *placed, self.goal_scene()]

    def success(self, backend: Backend) -> bool:
        """Cube within the tolerance of the target, released, resting on the table, and the
        hand backed off (a cube still held at the target does not count)."""
        ee = backend.ee_state()
        cube = self._cube_position(backend)
        released = ee[6] <= RELEASED_CLOSEDNESS
        resting = abs(cube[2] - CUBE_REST_Z) <= PLACED_Z_TOLERANCE
        backed_off = np.linalg.norm(ee[:3] - cube) >= BACKED_OFF
        return bool(released and resting and backed_off) and Task.success(self, backend)


TASKS: dict[str, type[Task]] = {
    "reach": ReachTask,
    "push": PushTask,
    "grasp": GraspTask,
    "pick_place": PickPlaceTask,
}


def make_task(name: str, overrides: list[str] | None = None) -> Task:
    """Build the task ``name`` from its config file.

    Raises:
        ValueError: ``name`` is not a known task (the message lists them).
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name](load_task_config(name, overrides))
