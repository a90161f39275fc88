"""Tasks and scripted experts: seeded goals, success tests, experts reaching success."""

from __future__ import annotations

import numpy as np
import pytest

import sim
from sim.experts import expert_action
from sim.goals import goal_schedule
from sim.tasks import GRASP_CLOSEDNESS, GRASP_HEIGHT, TASKS, make_task


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


def test_push_subgoals_approach_from_behind_then_push_along_the_line():
    task = make_task("push")
    task.sample(np.random.default_rng(3), np.array([0.46, 0.0, 0.37, np.pi, 0.0, 0.0, 0.0]))
    above, down, goal = task.subgoal_scenes()
    assert len(task.subgoal_shares) == 3
    assert sum(task.subgoal_shares) == task.config.episode_length
    assert [scene.ee[6] for scene in (above, down, goal)] == [1.0, 1.0, 1.0]  # pushes closed
    np.testing.assert_allclose(above.ee[:2], down.ee[:2])
    assert above.ee[2] > down.ee[2] + 0.05
    np.testing.assert_array_equal(goal.ee, task.goal_scene().ee)
    # The cube waits at its start until the last stage; the pushing spot is behind it: on the
    # line start -> target, on the far side from the target.
    np.testing.assert_array_equal(down.cube, task.cube_start)
    direction = task.push_direction()
    behind = task.cube_start[:2] - down.ee[:2]
    assert float(behind @ direction) > 0.05
    assert abs(float(behind @ np.array([-direction[1], direction[0]]))) < 1e-9
    moved = goal.ee[:2] - down.ee[:2]  # the push itself runs along the same line
    assert abs(float(moved @ np.array([-direction[1], direction[0]]))) < 1e-9


@pytest.mark.parametrize(
    ("name", "closedness"),
    [
        ("grasp", [0.0, 0.0, GRASP_CLOSEDNESS, GRASP_CLOSEDNESS]),
        ("pick_place", [0.0, 0.0] + [GRASP_CLOSEDNESS] * 3 + [0.0, 0.0]),
    ],
)
def test_subgoal_stages_open_around_the_cube_before_closing(name, closedness):
    """One step share per subgoal, summing to the episode length; the hand descends open around
    the cube, then closes on it at the same pose; the last subgoal is the goal."""
    task = make_task(name)
    task.sample(np.random.default_rng(0), np.array([0.46, 0.0, 0.37, np.pi, 0.0, 0.0, 0.0]))
    scenes = task.subgoal_scenes()
    assert len(task.subgoal_shares) == len(scenes)
    assert sum(task.subgoal_shares) == task.config.episode_length
    assert [scene.ee[6] for scene in scenes] == pytest.approx(closedness)
    grasp_tcp = task.cube_start + np.array([0.0, 0.0, GRASP_HEIGHT])
    np.testing.assert_allclose(scenes[1].ee[:3], grasp_tcp)
    np.testing.assert_allclose(scenes[2].ee[:3], grasp_tcp)
    assert scenes[0].ee[2] > grasp_tcp[2] + 0.1  # hovering above first
    np.testing.assert_array_equal(scenes[-1].ee, task.goal_scene().ee)


def test_subgoal_schedules_follow_the_task_shares_scaled_to_the_length():
    schedule = goal_schedule("pick_place", 7, 50)
    assert [schedule.count(stage) for stage in range(7)] == [12, 6, 3, 3, 14, 3, 9]
    assert goal_schedule("grasp", 4, 30) == [0] * 13 + [1] * 6 + [2] * 3 + [3] * 8
    assert goal_schedule("grasp", 4, 15) == [0] * 6 + [1] * 4 + [2] * 1 + [3] * 4
    assert goal_schedule("reach", 1, 5) == [0] * 5
    assert goal_schedule("grasp", 2, 30) == [0] * 15 + [1] * 15  # no shares: equal


def test_pick_place_counts_only_a_released_resting_cube_with_the_hand_backed_off():
    """Success is judged like a user would: a cube still held at the target, or let go with
    the fingers still around it, is not a placement; the expert's finished episode is."""
    environment = sim.make("pick_place", image_size=32, seed=4)
    try:
        environment.reset()
        task, backend = environment.unwrapped.task, environment.unwrapped.backend
        held_at_target = task.hand_at_cube(task.target)  # closed on the cube, at the target
        backend.place_ee(held_at_target.ee)
        backend.set_cube_pose(held_at_target.cube)
        assert task.distance(backend) < task.config.success_threshold
        assert not task.success(backend)  # still held
        open_around = task.hand_at_cube(task.target, 0.0)
        backend.place_ee(open_around.ee)
        assert not task.success(backend)  # released, but the hand has not backed off
        environment.reset()
        info = {}
        for _ in range(environment.episode_length):
            *_, info = environment.step(expert_action(environment))
        assert info["success"]
    finally:
        environment.close()


def test_grasp_tolerance_is_3_cm():
    assert make_task("grasp").config.success_threshold == pytest.approx(0.03)
