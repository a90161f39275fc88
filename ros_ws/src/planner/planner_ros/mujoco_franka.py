"""``mujoco_franka`` node: the ``sim`` MuJoCo Franka table-top behind the real-arm topics.

Publishes the camera image, joint states, TCP pose and gripper finger states at ``rate_hz``,
the task's goal image and goal state (latched), and the task's distance/success on
``/diagnostics``. With ``subgoals`` (default), multi-stage tasks (push, grasp, pick_place)
publish their subgoal images in turn instead, switched after the benchmark's numbers of control
steps (``sim.goals.goal_schedule``: by step count, never on success), as an operator
gives V-JEPA 2-AC subgoal images for pick-and-place. A command is a pose target plus a gripper
command; the tick by which both have arrived (or one has waited a tick alone) executes one
0.25 s control step toward it (``robots.franka.pose_delta`` -> ``env.step``, which applies the
safety filter again). ``~/reset`` starts a new episode (new goal). One thread owns the simulator
(MuJoCo's GL context and data are not shared across threads).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, Float64MultiArray, MultiArrayDimension
from std_srvs.srv import Trigger

from planner_ros.conversions import (
    MessageError,
    array_to_image,
    pose_to_state,
    state_to_pose,
)
from planner_ros.process import run_node
from planner_ros.topics import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, TOPICS
from robots.franka import pose_delta

PARAMETERS: dict[str, object] = {
    "task": "reach",
    "backend": "mujoco",
    "image_size": 128,
    # views side by side in each published image: "exterior" or "exterior,wrist" (what a
    # two-view world model such as sim-small v2 takes)
    "cameras": "exterior",
    "seed": -1,  # < 0: unseeded
    "rate_hz": 10.0,  # camera/state publishing and control tick rate
    "frame_id": "base",  # robot base frame of poses
    "camera_frame_id": "camera",
    "arm_id": "fr3",  # joint name prefix, as franka_ros2 names them
    "subgoals": True,  # publish multi-stage tasks' subgoals in turn (false: the final goal only)
    **{name: TOPICS[name] for name in TOPICS},
}


class MujocoFrankaNode(Node):
    """Simulated Franka with the topics of the real arm (see the module docstring)."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("mujoco_franka", **node_kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        param = self._param
        self._frame_id, self._arm_id = param("frame_id"), param("arm_id")
        self._camera_frame_id = param("camera_frame_id")
        self._lock = threading.Lock()
        self._pose_target: np.ndarray | None = None  # [6] pose part of the latest target
        self._gripper_target: float | None = None
        self._half_waited = False  # a lone pose or gripper command has waited one tick
        self._reset_request = threading.Event()
        self._reset_done = threading.Event()
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self._info: dict = {}
        self._error: BaseException | None = None
        self._goals: list[dict] = []  # this episode's (sub)goal observations; the last is the goal
        self._stages: list[int] = []  # goal index per control step (the last one holds after)
        self._goal_index = -1

        self._image_pub = self.create_publisher(Image, param("image_topic"), SENSOR_QOS)
        self._pose_pub = self.create_publisher(PoseStamped, param("pose_topic"), SENSOR_QOS)
        self._gripper_pub = self.create_publisher(
            JointState, param("gripper_state_topic"), SENSOR_QOS
        )
        self._joints_pub = self.create_publisher(
            JointState, param("joint_states_topic"), SENSOR_QOS
        )
        self._goal_image_pub = self.create_publisher(Image, param("goal_image_topic"), LATCHED_QOS)
        self._goal_state_pub = self.create_publisher(
            Float64MultiArray, param("goal_state_topic"), LATCHED_QOS
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, param("diagnostics_topic"), 10)
        self.create_subscription(PoseStamped, param("target_topic"), self._on_target, COMMAND_QOS)
        self.create_subscription(
            Float64, param("gripper_command_topic"), self._on_gripper, COMMAND_QOS
        )
        self.create_service(Trigger, "~/reset", self._on_reset)

        self._worker = threading.Thread(target=self._run, name="mujoco-franka", daemon=True)
        self._worker.start()
        self._ready.wait(timeout=60.0)
        if self._error is not None:
            raise self._error

    def _param(self, name: str):
        return self.get_parameter(name).value

    @property
    def info(self) -> dict:
        """The latest ``info`` of the environment (``success``, ``distance``, ``step``)."""
        with self._lock:
            return dict(self._info)

    def begin_shutdown(self) -> None:
        """Stop the simulator thread after its current tick (it closes the env)."""
        self._stop_event.set()

    def destroy_node(self) -> None:
        """Stop the simulator thread (waiting up to 1 s for its tick), then destroy the node."""
        self.begin_shutdown()
        if self._worker.is_alive():
            self._worker.join(timeout=1.0)
        super().destroy_node()

    # -- callbacks -----------------------------------------------------------------------------

    def _on_target(self, msg: PoseStamped) -> None:
        frame = self._frame_id
        if msg.header.frame_id and msg.header.frame_id != frame:
            self.get_logger().warning(
                f"ignoring target in frame {msg.header.frame_id!r}; expected {frame!r}",
                throttle_duration_sec=2.0,
            )
            return
        try:
            target = pose_to_state(msg, gripper=0.0)
        except MessageError as error:
            self.get_logger().warning(f"ignoring target pose: {error}")
            return
        with self._lock:
            self._pose_target = target[:6]

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self.get_logger().warning(f"ignoring gripper command {msg.data}")
            return
        with self._lock:
            self._gripper_target = float(np.clip(msg.data, 0.0, 1.0))

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        self._reset_done.clear()
        self._reset_request.set()
        response.success = self._reset_done.wait(timeout=30.0)
        response.message = "new episode started" if response.success else "reset timed out"
        return response

    # -- the simulator thread ------------------------------------------------------------------

    def _run(self) -> None:
        import sim

        param = self._param
        seed = int(param("seed"))
        try:
            env = sim.make(
                param("task"),
                backend=param("backend"),
                image_size=int(param("image_size")),
                seed=seed if seed >= 0 else None,
                cameras=str(param("cameras")),
            )
            obs = self._reset(env)
        except BaseException as error:  # noqa: BLE001 - re-raised in the constructor
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(env, obs)
        except Exception:  # noqa: BLE001 - publishing into a context that is shutting down
            if not self._stop_event.is_set():
                raise
        finally:
            env.close()

    def _loop(self, env, obs: dict) -> None:
        period = 1.0 / float(self._param("rate_hz"))
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            if self._reset_request.is_set():
                self._reset_request.clear()
                obs = self._reset(env)
                self._reset_done.set()
            action = self._take_action(obs["state"])
            if action is not None:
                obs, _, _, _, info = env.step(action)
                with self._lock:
                    self._info = info
                self._publish_goal(self._stages[min(int(info["step"]), len(self._stages) - 1)])
            self._publish_observation(obs)
            next_tick = max(next_tick + period, time.monotonic())
            self._stop_event.wait(next_tick - time.monotonic())

    def _reset(self, env) -> dict:
        """New episode: reset the env, drop pending commands, publish the first (sub)goal."""
        from sim.goals import episode_goals, goal_schedule

        obs, info = env.reset()
        with self._lock:
            self._pose_target, self._gripper_target, self._info = None, None, info
            self._half_waited = False
        task = env.unwrapped
        self._goals = episode_goals(task, bool(self._param("subgoals")))
        self._stages = goal_schedule(task.task.name, len(self._goals), task.episode_length)
        self._goal_index = -1
        self._publish_goal(self._stages[0])
        self._publish_observation(obs)
        return obs

    def _publish_goal(self, index: int) -> None:
        """Publish (sub)goal ``index`` of the episode on the goal topics, if it is a new one."""
        if index == self._goal_index:
            return
        self._goal_index = index
        goal = self._goals[index]
        stamp = self.get_clock().now().to_msg()
        self._goal_image_pub.publish(
            array_to_image(goal["image"], frame_id=self._camera_frame_id, stamp=stamp)
        )
        goal_state = Float64MultiArray(data=[float(v) for v in goal["state"]])
        goal_state.layout.dim = [MultiArrayDimension(label="x_y_z_roll_pitch_yaw_gripper", size=7)]
        self._goal_state_pub.publish(goal_state)
        which = f"subgoal {index + 1}/{len(self._goals)}" if len(self._goals) > 1 else "goal"
        self.get_logger().info(f"{which}: state {np.round(goal['state'], 3).tolist()}")

    def _take_action(self, state: np.ndarray) -> np.ndarray | None:
        """The delta action [7] toward the pending targets (None if no new command arrived)."""
        with self._lock:
            pose, gripper = self._pose_target, self._gripper_target
            if pose is None and gripper is None:
                return None
            if (pose is None or gripper is None) and not self._half_waited:
                # One command is a pose and a gripper message: give the other one tick to
                # arrive, so one command is one control step (not a pose step, then a gripper
                # step, which would also run the subgoal schedule at twice the pace).
                self._half_waited = True
                return None
            self._pose_target, self._gripper_target, self._half_waited = None, None, False
        current = torch.from_numpy(np.asarray(state, dtype=np.float64))
        target = current.clone()
        if pose is not None:
            target[:6] = torch.from_numpy(pose)
        if gripper is not None:
            target[6] = gripper
        return pose_delta(current, target).numpy().astype(np.float32)

    def _publish_observation(self, obs: dict) -> None:
        stamp = self.get_clock().now().to_msg()
        frame, arm = self._frame_id, self._arm_id
        self._image_pub.publish(
            array_to_image(obs["image"], frame_id=self._camera_frame_id, stamp=stamp)
        )
        pose, gripper = state_to_pose(obs["state"], frame_id=frame, stamp=stamp)
        self._pose_pub.publish(pose)
        fingers = JointState(name=[f"{arm}_finger_joint1", f"{arm}_finger_joint2"])
        fingers.header.stamp = stamp
        fingers.position = [float(v) for v in obs["qpos"][7:9]]
        self._gripper_pub.publish(fingers)
        joints = JointState(name=[f"{arm}_joint{i}" for i in range(1, 8)] + list(fingers.name))
        joints.header.stamp = stamp
        joints.position = [float(v) for v in obs["qpos"]]
        self._joints_pub.publish(joints)
        self._publish_task_status(stamp, gripper)

    def _publish_task_status(self, stamp, gripper: float) -> None:
        info = self.info
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK,
            name=self.get_fully_qualified_name(),
            message="success" if info.get("success") else "running",
            hardware_id="mujoco",
            values=[
                KeyValue(key="task", value=str(self._param("task"))),
                KeyValue(key="distance", value=str(info.get("distance", float("nan")))),
                KeyValue(key="success", value=str(bool(info.get("success", False)))),
                KeyValue(key="step", value=str(info.get("step", 0))),
                KeyValue(key="goal", value=f"{self._goal_index + 1}/{len(self._goals)}"),
                KeyValue(key="gripper", value=f"{gripper:.4f}"),
            ],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = stamp
        self._diag_pub.publish(msg)


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``mujoco_franka`` (ROS arguments: ``--ros-args -p key:=value``)."""
    return run_node(MujocoFrankaNode, "mujoco_franka", argv)


if __name__ == "__main__":
    sys.exit(main())
