"""The MuJoCo Franka table-top env: rendering, control, safety, goals and the Gymnasium API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.backend import BACKENDS, Backend, UnknownBackendError, make_backend
from sim.env import ActionError
from sim.tasks import GRASP_CLOSEDNESS


@pytest.fixture(scope="module")
def env():
    environment = sim.make("pick_place", image_size=64, seed=0)
    yield environment
    environment.close()


def test_reset_renders_the_arm_at_256():
    environment = sim.make("reach", seed=1)
    try:
        observation, info = environment.reset()
        image = observation["image"]
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert image.std() > 10  # a real scene, not a constant frame
        assert observation["state"].shape == (7,) and observation["state"].dtype == np.float32
        assert observation["qpos"].shape == (9,) and observation["qpos"].dtype == np.float32
        assert set(info) >= {"success", "distance"}
        # Move the arm: the pixels where it was must change.
        for _ in range(4):
            observation, *_ = environment.step(np.array([0.0, 0.05, -0.03, 0, 0, 0, 0]))
        changed = np.abs(observation["image"].astype(int) - image.astype(int)).max(axis=-1) > 30
        assert changed.mean() > 0.01
    finally:
        environment.close()


def test_step_moves_the_tcp_by_the_commanded_delta(env):
    observation, _ = env.reset(seed=3)
    before = observation["state"].astype(np.float64)
    delta = np.array([0.03, -0.02, -0.02, 0.0, 0.0, 0.0, 0.0])
    observation, reward, terminated, truncated, info = env.step(delta)
    moved = observation["state"][:3] - before[:3]
    np.testing.assert_allclose(moved, delta[:3], atol=0.006)
    assert not terminated and not truncated and reward == -info["distance"]


def test_huge_action_is_clipped_to_one_safe_step(env):
    observation, _ = env.reset(seed=4)
    before = observation["state"].astype(np.float64)
    observation, *_ = env.step(np.array([50.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    moved = np.linalg.norm(observation["state"][:3] - before[:3])
    assert 0.03 < moved < 0.056  # at most the 5 cm step limit, plus servo slack


@pytest.mark.parametrize(
    "action", [np.full(7, np.nan), np.zeros(6), np.zeros((1, 7)), [0, 0, 0, np.inf, 0, 0, 0]]
)
def test_bad_actions_raise(env, action):
    env.reset(seed=5)
    with pytest.raises(ActionError):
        env.step(action)


def test_goal_images_restore_the_state_exactly(env):
    env.reset(seed=6)
    env.step(np.array([0.01, 0.0, -0.02, 0, 0, 0, 0.5]))
    backend = env.unwrapped.backend
    before = backend.snapshot().copy()
    goal = env.unwrapped.goal()
    subgoals = env.unwrapped.subgoals()
    np.testing.assert_array_equal(backend.snapshot(), before)
    assert goal["image"].shape == (64, 64, 3) and len(subgoals) == 7
    assert not np.array_equal(goal["image"], subgoals[0]["image"])
    # The goal puts the cube at the target, hand open above it.
    np.testing.assert_allclose(goal["state"][:2], env.unwrapped.task.target[:2], atol=0.003)
    # Stepping after the goal render matches stepping from the restored snapshot.
    action = np.array([0.0, 0.02, 0.0, 0, 0, 0, 0])
    after_goal = env.step(action)[0]["state"]
    backend.restore(before)
    np.testing.assert_array_equal(env.step(action)[0]["state"], after_goal)


def test_episode_is_truncated_at_the_configured_length():
    environment = sim.make("reach", image_size=32, seed=0)
    try:
        environment.reset()
        flags = [environment.step(np.zeros(7))[2:4] for _ in range(environment.episode_length)]
        assert all(not terminated for terminated, _ in flags)
        assert [truncated for _, truncated in flags].index(True) == environment.episode_length - 1
    finally:
        environment.close()


def test_check_env_passes():
    environment = sim.make("push", image_size=32)
    try:
        check_env(environment.unwrapped, skip_render_check=True)
    finally:
        environment.close()


@pytest.mark.parametrize("env_id", sorted(sim.ENV_IDS.values()))
def test_registered_ids_make(env_id):
    environment = gym.make(env_id, image_size=32)
    try:
        observation, _ = environment.reset(seed=0)
        assert observation["image"].shape == (32, 32, 3)
    finally:
        environment.close()


def test_unknown_backend_and_task_are_clear_errors():
    with pytest.raises(UnknownBackendError, match="mujoco"):
        sim.make("reach", backend="bogus")
    with pytest.raises(ValueError, match="pick_place"):
        sim.make("fly", image_size=32)


def _gripper_action(delta: float, dz: float = 0.0) -> np.ndarray:
    return np.array([0.0, 0.0, dz, 0.0, 0.0, 0.0, delta])


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_gripper_state_tracks_the_command_with_nothing_in_hand(backend):
    environment = sim.make("reach", backend=backend, image_size=16, seed=0)
    try:
        observation, _ = environment.reset()
        for commanded in (0.5, 1.0, 0.2, 0.75, 0.0):
            delta = commanded - float(observation["state"][6])
            observation, *_ = environment.step(_gripper_action(delta))
            assert observation["state"][6] == pytest.approx(commanded, abs=0.02)
    finally:
        environment.close()


def _cube_and_tcp(environment) -> tuple[np.ndarray, np.ndarray]:
    backend = environment.unwrapped.backend
    return backend.cube_pose()[:3], backend.ee_state()


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_a_grasped_cube_stays_held_until_a_wider_command(backend):
    """Closing to the cube's width grasps it; zero gripper actions keep it while lifting, an
    opening within the 4 mm tolerance too; a wider command drops it."""
    environment = sim.make("grasp", backend=backend, image_size=16, seed=0)
    try:
        environment.reset()
        task = environment.unwrapped.task
        environment.unwrapped.backend.place_ee(task.hand_at_cube(task.cube_start, 0.0).ee)
        environment.step(_gripper_action(GRASP_CLOSEDNESS))
        for _ in range(3):
            environment.step(_gripper_action(0.0, dz=0.05))
        cube, tcp = _cube_and_tcp(environment)
        assert cube[2] > task.cube_start[2] + 0.12 and np.linalg.norm(cube - tcp[:3]) < 0.02
        assert tcp[6] == pytest.approx(GRASP_CLOSEDNESS, abs=0.03)  # measured: the cube's width
        environment.step(_gripper_action(-0.03))  # 2.4 mm wider: still held
        assert _cube_and_tcp(environment)[0][2] == pytest.approx(cube[2], abs=0.005)
        environment.step(_gripper_action(-0.2))
        environment.step(_gripper_action(0.0))
        assert _cube_and_tcp(environment)[0][2] < task.cube_start[2] + 0.01  # dropped
    finally:
        environment.close()


def test_snapshot_restore_is_exact_through_a_grasp():
    environment = sim.make("grasp", image_size=16, seed=1)
    try:
        environment.reset()
        task, backend = environment.unwrapped.task, environment.unwrapped.backend
        backend.place_ee(task.hand_at_cube(task.cube_start, 0.0).ee)
        snapshot = backend.snapshot()
        actions = [_gripper_action(1.0), _gripper_action(0.0, 0.05), _gripper_action(0.0, 0.05)]

        def run() -> np.ndarray:
            states = []
            for action in actions:
                environment.step(action)
                states.append(np.concatenate([backend.qpos(), backend.cube_pose()]))
            return np.array(states)

        first = run()
        assert first[-1, 11] > task.cube_start[2] + 0.05  # lifted: finger-cube contacts
        backend.restore(snapshot)
        environment.unwrapped.goal()  # teleports arm and cube, then restores
        np.testing.assert_array_equal(run(), first)
    finally:
        environment.close()


def test_the_workspace_box_is_reachable_with_the_hand_down():
    # Every corner (and the centre) of the safety filter's box: MuJoCo IK places the TCP there.
    import itertools

    from robots.franka import load_limits

    box = load_limits().workspace
    env = sim.make("reach", image_size=32)
    try:
        env.reset(seed=0)
        down = env.task.home[3:6]
        corners = list(itertools.product(*zip(box.lower, box.upper, strict=True)))
        centre = tuple((lo + hi) / 2 for lo, hi in zip(box.lower, box.upper, strict=True))
        for point in [*corners, centre]:
            env.reset(seed=0)
            error = env.backend.place_ee(np.r_[point, down, 0.0])
            assert error < 0.01, f"{point}: TCP {error * 100:.1f} cm away"
    finally:
        env.close()


def test_mujoco_backend_satisfies_the_protocol():
    backend = make_backend("mujoco", image_size=32)
    try:
        assert isinstance(backend, Backend)
    finally:
        backend.close()
