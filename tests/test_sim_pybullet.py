"""The PyBullet backend: rendering, control, grasping, snapshots and the Gymnasium API."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.backend import Backend, make_backend
from sim.env import home_qpos
from sim.experts import expert_action
from sim.hand import TCP_ABOVE_FINGERTIPS
from sim.pybullet_backend import PybulletBackend
from sim.tasks import CUBE_REST_Z

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def env():
    environment = sim.make("reach", backend="pybullet", image_size=64, seed=0)
    yield environment
    environment.close()


def _state(backend: PybulletBackend) -> np.ndarray:
    return np.concatenate([backend.qpos(), backend.cube_pose(), backend.ee_state()])


def _run(environment, steps: int) -> np.ndarray:
    """States [steps, 23] after each of ``steps`` expert actions."""
    states = []
    for _ in range(steps):
        environment.step(expert_action(environment))
        states.append(_state(environment.unwrapped.backend))
    return np.array(states)


def test_backend_satisfies_the_protocol(env):
    assert isinstance(env.unwrapped.backend, Backend)
    assert env.unwrapped.backend.control_dt == pytest.approx(0.25)


def test_reset_renders_the_scene_with_the_hand_down(env):
    observation, info = env.reset(seed=0)
    image = observation["image"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 10  # arm, table and floor, not a constant frame
    state = observation["state"].astype(np.float64)
    assert abs(abs(state[3]) - np.pi) < 0.01 and abs(state[4]) < 0.01  # pointing down
    assert state[6] == pytest.approx(0.0, abs=1e-3)  # open
    np.testing.assert_allclose(observation["qpos"], home_qpos(), atol=1e-5)
    assert 0.3 < state[0] < 0.6 and 0.2 < state[2] < 0.5  # in front of the base, above table
    assert set(info) >= {"success", "distance"}
    for _ in range(4):
        moved, *_ = env.step(np.array([0.0, 0.05, -0.04, 0.0, 0.0, 0.0, 0.0]))
    changed = np.abs(moved["image"].astype(int) - image.astype(int)).max(axis=-1) > 30
    assert changed.mean() > 0.01


def test_step_moves_the_tcp_by_the_commanded_delta(env):
    observation, _ = env.reset(seed=1)
    before = observation["state"].astype(np.float64)
    delta = np.array([0.03, -0.02, -0.02, 0.0, 0.0, 0.1, 1.0])
    observation, *_ = env.step(delta)
    after = observation["state"].astype(np.float64)
    np.testing.assert_allclose(after[:3] - before[:3], delta[:3], atol=0.006)
    assert after[5] - before[5] == pytest.approx(0.1, abs=0.02)  # yaw
    assert after[6] == pytest.approx(1.0, abs=0.02)  # fingers closed (nothing between them)
    observation, *_ = env.step(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]))
    assert observation["state"][6] == pytest.approx(0.0, abs=0.02)  # and open again


def test_snapshot_restore_is_exact_through_contacts():
    environment = sim.make("grasp", backend="pybullet", image_size=16, seed=0)
    try:
        environment.reset(seed=0)
        _run(environment, 6)  # descending toward the cube, nothing touching it yet
        backend = environment.unwrapped.backend
        snapshot = backend.snapshot()
        first = _run(environment, 8)  # grasp and lift: finger-cube contacts appear
        assert first[-1, 11] > CUBE_REST_Z + 0.03  # the cube is up in the hand
        backend.restore(snapshot)
        environment.unwrapped.goal()  # teleports arm and cube, then restores
        np.testing.assert_array_equal(_run(environment, 8), first)
        assert backend.time == pytest.approx(14 * backend.control_dt)
    finally:
        environment.close()


def test_goal_renders_the_target_and_restores_the_state(env):
    env.reset(seed=2)
    env.step(np.array([0.02, 0.0, -0.02, 0.0, 0.0, 0.0, 0.0]))
    backend = env.unwrapped.backend
    before = _state(backend)
    goal = env.unwrapped.goal()
    np.testing.assert_array_equal(_state(backend), before)
    np.testing.assert_allclose(goal["state"][:3], env.unwrapped.task.target, atol=0.003)
    assert goal["image"].shape == (64, 64, 3)
    assert not np.array_equal(goal["image"], env.render())


def test_same_seed_gives_the_same_episode_after_other_episodes():
    environment = sim.make("push", backend="pybullet", image_size=16)
    try:
        environment.reset(seed=7)
        first = _run(environment, 6)
        environment.reset(seed=3)
        _run(environment, 6)
        environment.reset(seed=7)
        np.testing.assert_array_equal(_run(environment, 6), first)
    finally:
        environment.close()


def test_check_env_passes():
    environment = sim.make("reach", backend="pybullet", image_size=32, seed=0)
    try:
        check_env(environment, skip_render_check=True)
    finally:
        environment.close()


@pytest.mark.parametrize(("task", "seed"), [("reach", 0), ("reach", 1), ("grasp", 2)])
def test_scripted_expert_succeeds(task, seed):
    environment = sim.make(task, backend="pybullet", image_size=16)
    try:
        environment.reset(seed=seed)
        truncated, info = False, {}
        while not truncated:
            _, _, _, truncated, info = environment.step(expert_action(environment))
        assert info["success"], info
    finally:
        environment.close()


def test_two_backends_coexist_and_close_twice():
    first, second = PybulletBackend(image_size=16), PybulletBackend(image_size=16)
    try:
        first.reset(home_qpos())
        second.reset(home_qpos())
        second.set_cube_pose(np.array([0.4, 0.1, CUBE_REST_Z]))
        for _ in range(2):
            first.move_ee(first.ee_state() + np.array([0.0, 0.0, -0.04, 0, 0, 0, 0]))
        np.testing.assert_allclose(second.qpos(), home_qpos(), atol=1e-6)
        np.testing.assert_allclose(first.cube_pose()[:3], [0.5, 0.0, CUBE_REST_Z], atol=1e-3)
        with pytest.raises(ValueError, match="snapshot"):
            second.restore(first.snapshot())
    finally:
        first.close()
        first.close()
        second.close()


def test_place_ee_and_cube_pose(env):
    env.reset(seed=4)
    backend = env.unwrapped.backend
    target = backend.ee_state() + np.array([0.1, -0.15, -0.2, 0.0, 0.0, 0.5, 0.0])
    error = backend.place_ee(target)
    state = backend.ee_state()
    assert error < 1e-3 and np.linalg.norm(state[:3] - target[:3]) < 1e-3
    assert state[5] == pytest.approx(target[5], abs=0.01)
    quat = np.array([np.cos(0.3), 0.0, 0.0, np.sin(0.3)])  # 0.6 rad about z
    backend.set_cube_pose(np.array([0.45, -0.1, CUBE_REST_Z]), quat)
    np.testing.assert_allclose(backend.cube_pose(), [0.45, -0.1, CUBE_REST_Z, *quat], atol=1e-9)


def test_bad_inputs_raise(env):
    backend = env.unwrapped.backend
    with pytest.raises(ValueError, match="qpos"):
        backend.reset(np.zeros(7))
    with pytest.raises(ValueError, match="target"):
        backend.move_ee(np.full(7, np.nan))
    with pytest.raises(ValueError, match="cube position"):
        backend.set_cube_pose(np.zeros(2))


def test_tcp_is_the_same_point_above_the_fingertips_in_both_backends():
    """With the hand pointing down, the TCP height at which a fingertip touches the table top is
    the same in MuJoCo (long gymnasium-robotics fingers) and PyBullet (Franka's fingers)."""
    touch_heights = {}
    for name in ("mujoco", "pybullet"):
        backend = make_backend(name, image_size=16)
        try:
            backend.reset(home_qpos())
            target = backend.ee_state()
            for height in (0.05, 0.2):
                target[:3] = (0.5, 0.1, height)
                backend.place_ee(target)
                touch = backend.ee_state()[2] - backend.fingertip_clearance()
                touch_heights.setdefault(name, []).append(touch)
        finally:
            backend.close()
    for name, heights in touch_heights.items():
        # 1 mm of PyBullet's convex-mesh collision margin is the only slack.
        assert heights == pytest.approx([TCP_ABOVE_FINGERTIPS] * 2, abs=0.0015), name
    assert abs(touch_heights["mujoco"][0] - touch_heights["pybullet"][0]) < 0.005
