"""End to end over real rclpy on loopback: ``mujoco_franka`` (MuJoCo reach task, 64 px) and
``goal_planner`` (ground-truth-state world model, small CEM), started by the in-process bringup,
reach the goal; ``~/reset`` starts a new episode; the bringup command line runs and exits."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
pytest.importorskip("sim", reason="the MuJoCo simulator (sim) is not importable")  # sets MUJOCO_GL

ROS_PACKAGE = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "planner"
if str(ROS_PACKAGE) not in sys.path:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROS_PACKAGE))

import rclpy  # noqa: E402
from planner_ros import bringup  # noqa: E402
from planner_ros.runtime import init_context, spin_nodes, wait_for  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

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


def test_bringup_command_line_runs_and_exits(ros_env):
    argv = [
        "--checkpoint=state",
        "--set=mujoco_franka.image_size=32",
        "--set=goal_planner.rate_hz=5",
        "--set=goal_planner.planner_overrides=[actor.samples=16, actor.elites=4]",
        "--duration=1.5",
        "--ros-args",
        "--log-level",
        "warn",
    ]
    assert bringup.main(argv) == 0


def test_bringup_rejects_bad_set_options():
    with pytest.raises(bringup.BringupError, match="NODE.PARAM=VALUE"):
        bringup.parse_set(["rate_hz=2"])
    with pytest.raises(bringup.BringupError, match="not started"):
        bringup.node_parameters(
            bringup.BringupOptions(use_sim=False, overrides={"mujoco_franka": {"task": "push"}})
        )
