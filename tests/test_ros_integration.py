"""End to end over real rclpy on loopback: ``mujoco_franka`` (MuJoCo reach task, 64 px) and
``goal_planner`` (ground-truth-state world model, small CEM), started by the in-process bringup,
reach the goal; ``~/reset`` starts a new episode; multi-stage tasks publish their subgoals in
turn; the bringup command line runs and exits."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
pytest.importorskip("sim", reason="the MuJoCo simulator (sim) is not importable")  # sets MUJOCO_GL


import rclpy  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from planner_ros import bringup  # noqa: E402
from planner_ros.bringup import sim_cameras  # noqa: E402
from planner_ros.models import preset_for  # noqa: E402
from planner_ros.runtime import init_context, spin_nodes, wait_for  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

import world_model  # noqa: E402
from sim.tasks import load_task_config  # noqa: E402

DOMAIN_ID = 160 + os.getpid() % 60  # unique per test module and process
MAX_STEPS = 25  # control steps allowed to reach (the task's episode is 20)
FAST = {
    "mujoco_franka": {"image_size": 64, "seed": 3, "rate_hz": 20.0},
    "goal_planner": {
        "rate_hz": 10.0,
        "device": "cpu",
        "planner_overrides": ["actor.samples=64", "actor.elites=8", "actor.iterations=4"],
    },
}


@pytest.fixture()
def ros_env():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
        patch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        yield


def test_sim_and_planner_reach_the_goal(ros_env):
    tolerance = load_task_config("reach").success_threshold
    context = init_context(DOMAIN_ID)
    options = bringup.BringupOptions(task="reach", checkpoint="state", overrides=FAST)
    sim, planner = bringup.create_nodes(options, context)
    probe = rclpy.create_node("probe", context=context)
    reset = probe.create_client(Trigger, "mujoco_franka/reset")
    try:
        with spin_nodes(context, [sim, planner, probe]):
            start = sim.info["distance"]
            assert start > 0.1  # reach goals are >= 10 cm away
            reached = wait_for(
                lambda: sim.info["distance"] < tolerance or sim.info["step"] >= MAX_STEPS, 60.0
            )
            info = sim.info
            assert reached and info["distance"] < tolerance, info
            assert info["success"] and info["step"] < MAX_STEPS

            # A new episode: new goal, step counter back to 0, and the planner follows it.
            assert reset.wait_for_service(timeout_sec=5.0)
            future = reset.call_async(Trigger.Request())
            assert wait_for(future.done, 30.0) and future.result().success
            new_start = sim.info["distance"]
            assert not np.isclose(new_start, info["distance"])
            assert wait_for(lambda: sim.info["distance"] < tolerance, 60.0), sim.info
    finally:
        for node in (sim, planner, probe):
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_sim_publishes_the_subgoals_on_the_benchmark_schedule(ros_env):
    """grasp (30 steps, shares 13, 6, 3, 8): the goal topics carry subgoal 1 at reset, then 2,
    3 and 4 after 13, 19 and 22 executed commands, the states of ``env.subgoals()`` in order."""
    from geometry_msgs.msg import PoseStamped
    from planner_ros.conversions import state_to_pose
    from planner_ros.mujoco_franka import MujocoFrankaNode
    from planner_ros.runtime import as_parameters
    from planner_ros.topics import COMMAND_QOS, LATCHED_QOS
    from std_msgs.msg import Float64MultiArray

    import sim
    from sim.goals import goal_schedule

    env = sim.make("grasp", image_size=32, seed=5)
    env.reset()
    expected = [goal["state"] for goal in env.unwrapped.subgoals()]
    schedule = goal_schedule("grasp", len(expected), env.unwrapped.episode_length)
    env.close()
    switches = [step for step in range(1, len(schedule)) if schedule[step] != schedule[step - 1]]
    assert len(expected) == 4 and switches == [13, 19, 22]

    context = init_context(DOMAIN_ID)
    sim_node = MujocoFrankaNode(  # the sim alone: the probe plays the planner
        context=context,
        parameter_overrides=as_parameters(
            {"task": "grasp", "image_size": 32, "seed": 5, "rate_hz": 20.0}
        ),
    )
    probe = rclpy.create_node("goal_probe", context=context)
    goals: list[np.ndarray] = []
    probe.create_subscription(
        Float64MultiArray, "goal/state", lambda msg: goals.append(np.array(msg.data)), LATCHED_QOS
    )
    commands = probe.create_publisher(PoseStamped, "target_pose", COMMAND_QOS)
    start = sim.make("grasp", image_size=32, seed=5).reset()[0]["state"]

    def hold() -> None:  # one command per tick: the arm stays, the step count advances
        commands.publish(state_to_pose(start, "base", probe.get_clock().now().to_msg())[0])

    probe.create_timer(0.05, hold)
    try:
        with spin_nodes(context, [sim_node, probe]):
            assert wait_for(lambda: sim_node.info.get("step", 0) >= 24, 60.0), sim_node.info
            assert wait_for(lambda: len(goals) >= 4, 10.0), len(goals)
            assert len(goals) == 4
            for got, want in zip(goals, expected, strict=True):
                np.testing.assert_allclose(got, want, atol=1e-6)
    finally:
        sim_node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)


def test_sim_publishes_both_views_side_by_side_for_a_two_view_model(ros_env):
    from planner_ros.conversions import image_to_array
    from planner_ros.mujoco_franka import MujocoFrankaNode
    from planner_ros.runtime import as_parameters
    from planner_ros.topics import LATCHED_QOS, SENSOR_QOS
    from sensor_msgs.msg import Image

    context = init_context(DOMAIN_ID)
    sim_node = MujocoFrankaNode(
        context=context,
        parameter_overrides=as_parameters(
            {"task": "grasp", "image_size": 32, "seed": 5, "cameras": "exterior,wrist"}
        ),
    )
    probe = rclpy.create_node("view_probe", context=context)
    seen: dict[str, tuple[int, ...]] = {}
    for topic, qos in (("camera/image", SENSOR_QOS), ("goal/image", LATCHED_QOS)):
        probe.create_subscription(
            Image, topic, lambda msg, t=topic: seen.setdefault(t, image_to_array(msg).shape), qos
        )
    try:
        with spin_nodes(context, [sim_node, probe]):
            assert wait_for(lambda: len(seen) == 2, 30.0), seen
        assert seen == {"camera/image": (32, 64, 3), "goal/image": (32, 64, 3)}
    finally:
        sim_node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)


def test_sim_steps_once_per_pose_and_gripper_command(ros_env):
    """A command's two messages make one control step, not two, even when a sim tick falls
    between them (40 ms apart here, in either order; the sim ticks every 100 ms)."""
    import time

    from planner_ros.conversions import state_to_pose
    from planner_ros.mujoco_franka import MujocoFrankaNode
    from planner_ros.runtime import as_parameters
    from planner_ros.topics import COMMAND_QOS
    from std_msgs.msg import Float64

    context = init_context(DOMAIN_ID)
    sim_node = MujocoFrankaNode(
        context=context,
        parameter_overrides=as_parameters({"task": "reach", "image_size": 32, "rate_hz": 10.0}),
    )
    probe = rclpy.create_node("command_probe", context=context)
    poses = probe.create_publisher(PoseStamped, "target_pose", COMMAND_QOS)
    grippers = probe.create_publisher(Float64, "gripper/command", COMMAND_QOS)
    commands = 6
    try:
        with spin_nodes(context, [sim_node, probe]):
            assert wait_for(lambda: poses.get_subscription_count() > 0, 10.0)
            assert wait_for(lambda: grippers.get_subscription_count() > 0, 10.0)
            start = sim_node.info.get("step", 0)
            for index in range(commands):
                state = np.array([0.46, 0.0, 0.37 - 0.01 * index, np.pi, 0.0, 0.0, 0.0])
                pose = state_to_pose(state, "base", probe.get_clock().now().to_msg())[0]
                halves = [(poses, pose), (grippers, Float64(data=0.0))]
                (first, one), (second, other) = halves if index % 2 else halves[::-1]
                first.publish(one)
                time.sleep(0.04)
                second.publish(other)
                time.sleep(0.5)
            time.sleep(0.3)
            assert sim_node.info["step"] - start == commands, sim_node.info
    finally:
        sim_node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)


def test_bringup_command_line_runs_prints_each_plan_and_exits(ros_env, capsys):
    argv = [
        "--checkpoint=state",
        "--image-size=32",
        "--seed=2",
        "--set=goal_planner.rate_hz=5",
        "--set=goal_planner.planner_overrides=[actor.samples=16, actor.elites=4]",
        "--duration=6",
        "--ros-args",
        "--log-level",
        "warn",
    ]
    assert bringup.run(argv) == 0
    plans = [line for line in capsys.readouterr().out.splitlines() if "[bringup] plan" in line]
    assert plans, "no line per plan"
    assert all("energy" in line and "distance" in line and " s" in line for line in plans)


def test_bringup_refuses_a_bad_option_in_one_line(ros_env, capsys):
    assert bringup.run(["--checkpoint=state", "--image-size=8", "--duration=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "image_size must be an int" in err[0], err
    assert bringup.run(["--verify=maybe", "--no-sim"]) == 2
    assert "verify must be one of" in capsys.readouterr().err


def test_bringup_defaults_come_from_the_config_files():
    sim = bringup.node_parameters(bringup.BringupOptions())
    assert sim["goal_planner"]["checkpoint"] == "sim-small"  # plans from pixels
    assert sim["goal_planner"]["config"] == ""  # planner.config.default_preset: fast here
    assert sim["mujoco_franka"]["image_size"] == 128  # what sim-small was trained on
    assert sim["mujoco_franka"]["cameras"] == sim_cameras("sim-small")  # the model's views
    real = bringup.node_parameters(bringup.BringupOptions(use_sim=False))
    assert set(real) == {"goal_planner"}
    assert real["goal_planner"]["checkpoint"] == "sim-small"  # never the sim-only state model
    assert real["goal_planner"]["image_topic"] == "/camera/camera/color/image_raw"
    assert real["goal_planner"]["verify"] == "strict"  # the real arm refuses unrecorded models
    assert sim["goal_planner"]["verify"] is True
    options, _, _ = bringup.parse_args(
        ["--no-sim", "--checkpoint", "/models/mine", "--device", "cuda", "--verify", "false"]
    )
    real = bringup.node_parameters(options)["goal_planner"]
    assert (real["checkpoint"], real["device"], real["config"]) == ("/models/mine", "cuda", "")
    # "" is the preset whose policy fits the checkpoint: fast for sim-small, icem otherwise
    assert preset_for("", "sim-small") == "fast"
    assert preset_for("", "/models/mine") == preset_for("", "state") == "icem"
    assert preset_for("cem_paper", "sim-small") == "cem_paper"  # a named preset stands
    assert real["verify"] is False
    options, _, _ = bringup.parse_args(["--seed", "4", "--image-size", "64", "--verify", "strict"])
    params = bringup.node_parameters(options)
    assert (params["mujoco_franka"]["seed"], params["mujoco_franka"]["image_size"]) == (4, 64)
    assert params["goal_planner"]["verify"] == "strict"


def test_bringup_gives_the_sim_the_views_of_the_planners_model(tmp_path):
    world_model.save(world_model.build("small-2view", seed=0), tmp_path / "wide")
    options, _, _ = bringup.parse_args(["--checkpoint", str(tmp_path / "wide")])
    assert bringup.node_parameters(options)["mujoco_franka"]["cameras"] == "exterior,wrist"
    options, _, _ = bringup.parse_args(["--checkpoint", "state"])
    assert bringup.node_parameters(options)["mujoco_franka"]["cameras"] == "exterior"
    options, _, _ = bringup.parse_args(
        ["--checkpoint", str(tmp_path / "wide"), "--set", "mujoco_franka.cameras=exterior"]
    )
    assert bringup.node_parameters(options)["mujoco_franka"]["cameras"] == "exterior"
    assert sim_cameras("/no/such/model") == "exterior"  # check_parameters names that one


def test_bringup_rejects_bad_set_options():
    with pytest.raises(bringup.BringupError, match="NODE.PARAM=VALUE"):
        bringup.parse_set(["rate_hz=2"])
    with pytest.raises(bringup.BringupError, match="not started"):
        bringup.node_parameters(
            bringup.BringupOptions(use_sim=False, overrides={"mujoco_franka": {"task": "push"}})
        )
