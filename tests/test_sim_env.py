"""The MuJoCo Franka table-top env: rendering, control, safety, goals and the Gymnasium API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.backend import UnknownBackendError
from sim.env import ActionError


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
    assert goal["image"].shape == (64, 64, 3) and len(subgoals) == 3
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
