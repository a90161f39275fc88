"""Tasks and scripted experts: seeded goals, success tests, experts reaching success."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from sim.experts import expert_action
from sim.tasks import TASKS, make_task


def test_goal_sampling_is_seeded():
    first, second = sim.make("pick_place", image_size=32), sim.make("pick_place", image_size=32)
    try:
        first.reset(seed=7)
        second.reset(seed=7)
        np.testing.assert_array_equal(first.task.target, second.task.target)
        np.testing.assert_array_equal(first.task.cube_start, second.task.cube_start)
        second.reset(seed=8)
        assert not np.array_equal(first.task.target, second.task.target)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_configs_load(name):
    task = make_task(name)
    assert task.name == name and task.config.episode_length > 0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_goal_scene_counts_as_success(name):
    """Placing the scene in the goal configuration satisfies the task's own success test."""
    environment = sim.make(name, image_size=32, seed=2)
    try:
        environment.reset()
        assert not environment.unwrapped.task.success(environment.unwrapped.backend)
        scene = environment.unwrapped.task.goal_scene()
        backend = environment.unwrapped.backend
        backend.place_ee(scene.ee)
        backend.set_cube_pose(scene.cube)
        assert environment.unwrapped.task.success(backend)
    finally:
        environment.close()


def test_reach_expert_succeeds():
    environment = sim.make("reach", image_size=32, seed=11)
    try:
        environment.reset()
        info = {}
        for _ in range(12):
            *_, info = environment.step(expert_action(environment))
        assert info["success"] and info["distance"] < 0.01
    finally:
        environment.close()


def test_grasp_expert_lifts_the_cube():
    environment = sim.make("grasp", image_size=32, seed=3)
    try:
        environment.reset()
        start_height = environment.unwrapped.backend.cube_pose()[2]
        info = {}
        for _ in range(environment.episode_length):
            *_, info = environment.step(expert_action(environment))
        assert environment.unwrapped.backend.cube_pose()[2] > start_height + 0.1
        assert info["success"]
    finally:
        environment.close()


def test_expert_noise_changes_actions():
    environment = sim.make("reach", image_size=32, seed=0)
    try:
        environment.reset()
        clean = expert_action(environment)
        noisy = expert_action(environment, noise=0.5, rng=np.random.default_rng(0))
        assert clean.shape == noisy.shape == (7,) and not np.allclose(clean, noisy)
    finally:
        environment.close()
