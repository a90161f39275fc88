"""``goal_planner`` node: camera image + end-effector state + goal image in, the next safe
Cartesian target (``PoseStamped``) and gripper command out, planned by ``planner.Planner`` on a
worker thread at ``rate_hz``. No planning logic lives here; the node adds the robot-side safety:
``robots.franka.SafetyFilter`` on every command, a last check right before publishing
(``unsafe_target``: a target that is not finite, in the box and within one step is replaced by
hold, with an error in the log), a watchdog that holds the current pose when the
image or state goes stale, a latched e-stop (``~/stop``; cleared by ``~/enable`` or by setting
the ``enabled`` parameter true), and diagnostics on ``/diagnostics``.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger

from planner_ros.conversions import (
    MessageError,
    gripper_closedness,
    image_to_array,
    pose_to_state,
    stamp_seconds,
    state_to_pose,
)
from planner_ros.inputs import GoalImageError, InputBuffer, Snapshot, read_goal_image
from planner_ros.runtime import run_node
from planner_ros.topics import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, TOPICS
from robots.franka import (
    FrankaLimits,
    SafetyFilter,
    euler_to_matrix,
    load_limits,
    matrix_to_rotvec,
)

PARAMETERS: dict[str, object] = {
    "config": "icem",  # planner preset: configs/planner/<config>.yaml
    "checkpoint": "sim-small",  # world model path/name; "state"; "random:<preset>" (untrained)
    "device": "auto",
    "cpu_threads": 0,  # torch threads when planning on the CPU; 0 = torch's default
    "planner_overrides": [""],  # "key=value" planner config overrides ("" ignored)
    "robot_limits": "franka",  # configs/robot/<name>.yaml for the safety filter
    "rate_hz": 4.0,
    "watchdog_s": 1.0,
    "enabled": True,
    "fresh_inputs": True,  # plan on inputs stamped after the last command (waits <= watchdog_s)
    "goal_image": "",  # image file loaded at start and by ~/set_goal
    "frame_id": "base",  # used until a pose message names its frame
    **{name: topic for name, topic in TOPICS.items() if name != "joint_states_topic"},
}
RUNTIME_PARAMETERS = ("rate_hz", "watchdog_s", "enabled", "goal_image")


def build_planner(config: str, checkpoint: str, device: str, overrides: list[str]):
    """The library planner for a preset and a world model.

    ``checkpoint``: a model spec for ``world_model.resolve_model``: a path or bundled name;
    ``state`` = the ground-truth-state model (sim only: it reads the state, not the pixels);
    ``random:<preset>`` = an untrained model of a preset (plumbing and latency checks only).
    """
    from planner import Planner

    return Planner.from_config(config, world_model=checkpoint, device=device, overrides=overrides)


def cpu_threads(requested: int) -> int | None:
    """Torch threads for planning on the CPU: ``requested`` if > 0, else None (torch's default,
    one per core). On 2 cores sim-small's 128 x 12 icem plans took 2.0 s with 2 threads and
    3.3 s with 1 beside the sim node (one executor thread, ``runtime.spin_nodes``); set it
    lower when other busy processes share the cores.

    Raises:
        ValueError: ``requested`` < 0.
    """
    if requested < 0:
        raise ValueError(f"cpu_threads must be >= 0 (0 = torch's default), got {requested}")
    return requested or None


def unsafe_target(target: np.ndarray, state: np.ndarray, limits: FrankaLimits) -> str:
    """Why ``target`` [7] must not be commanded from ``state`` [7] ('' when it may be).

    The last check before a command leaves the node (the safety filter's output should always
    pass it): the target is 7 finite numbers, no further outside the workspace box than the arm
    already is, and within one step's translation, rotation and gripper limits of ``state``.
    """
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (7,) or not np.all(np.isfinite(target)):
        return "it is not 7 finite numbers"
    lower, upper = np.array(limits.workspace.lower), np.array(limits.workspace.upper)
    outside = np.linalg.norm(target[:3] - np.clip(target[:3], lower, upper))
    if outside > np.linalg.norm(state[:3] - np.clip(state[:3], lower, upper)) + 1e-6:
        return f"it is {outside:.4f} m outside the workspace box"
    step = limits.step
    if np.linalg.norm(target[:3] - state[:3]) > step.translation + 1e-6:
        return f"it moves more than {step.translation:g} m in one step"
    relative = euler_to_matrix(torch.from_numpy(target[3:6])) @ euler_to_matrix(
        torch.from_numpy(state[3:6].astype(np.float64))
    ).transpose(-1, -2)
    if float(matrix_to_rotvec(relative).norm()) > step.rotation + 1e-6:
        return f"it rotates more than {step.rotation:g} rad in one step"
    if not 0.0 <= target[6] <= 1.0 or abs(target[6] - state[6]) > step.gripper + 1e-6:
        return "its gripper command is outside [0, 1] or one step's limit"
    return ""


class GoalPlannerNode(Node):
    """The goal-image MPC node (see the module docstring and ``ros_ws/README.md``)."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("goal_planner", **node_kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        param = self._param
        overrides = [o for o in param("planner_overrides") or [] if o.strip()]
        self._planner = build_planner(
            param("config"), param("checkpoint"), param("device"), overrides
        )
        threads = cpu_threads(int(param("cpu_threads")))
        if threads is not None and self._planner.device.type == "cpu":
            torch.set_num_threads(threads)
        # The ground-truth-state model reads the goal's state, not its pixels: the goal image and
        # the goal state arrive on separate topics, so plan only once both are there.
        self._needs_goal_state = param("checkpoint") == "state"
        self._safety = SafetyFilter(load_limits(param("robot_limits")))
        self._inputs = InputBuffer()
        self._enabled = bool(param("enabled"))
        self._rate_hz, self._watchdog_s = float(param("rate_hz")), float(param("watchdog_s"))
        self._rejected_images = 0
        self._last_rejection = ""
        self._mode = "starting"
        self._planned_goal = -1
        self._fresh_inputs = bool(param("fresh_inputs"))
        self._last_command_s: float | None = None  # ROS time of the last planned command
        self._stop_event = threading.Event()
        # Held while a cycle decides and publishes (not while it plans) and while `enabled`
        # changes: once ~/stop has answered, no cycle can publish anything but a hold.
        self._gate = threading.Lock()

        self._target_pub = self.create_publisher(PoseStamped, param("target_topic"), COMMAND_QOS)
        self._gripper_pub = self.create_publisher(
            Float64, param("gripper_command_topic"), COMMAND_QOS
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, param("diagnostics_topic"), 10)
        self.create_subscription(Image, param("image_topic"), self._on_image, SENSOR_QOS)
        self.create_subscription(PoseStamped, param("pose_topic"), self._on_pose, SENSOR_QOS)
        self.create_subscription(
            JointState, param("gripper_state_topic"), self._on_gripper, SENSOR_QOS
        )
        self.create_subscription(Image, param("goal_image_topic"), self._on_goal_image, LATCHED_QOS)
        self.create_subscription(
            Float64MultiArray, param("goal_state_topic"), self._on_goal_state, LATCHED_QOS
        )
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/set_goal", self._on_set_goal)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        if param("goal_image"):
            self._inputs.set_goal(read_goal_image(param("goal_image")))

        self._worker = threading.Thread(target=self._run, name="goal-planner", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"planning with preset {param('config')!r} on {param('checkpoint')!r} at "
            f"{self._rate_hz:g} Hz; watchdog {self._watchdog_s:g} s; enabled={self._enabled}"
        )

    def _param(self, name: str):
        return self.get_parameter(name).value

    def destroy_node(self) -> None:
        """Stop the planning thread, then destroy the node."""
        self._stop_event.set()
        if self._worker.is_alive():
            self._worker.join(timeout=10.0)
        super().destroy_node()

    # -- callbacks (executor threads): store the latest inputs ---------------------------------

    def _on_image(self, msg: Image) -> None:
        try:
            image = image_to_array(msg)
        except MessageError as error:
            self._rejected_images += 1
            self._last_rejection = str(error)
            self.get_logger().warning(f"skipping camera image: {error}")
            return
        self._inputs.set_image(image, stamp_seconds(msg))

    def _on_pose(self, msg: PoseStamped) -> None:
        try:
            state = pose_to_state(msg, gripper=0.0)
        except MessageError as error:
            self.get_logger().warning(f"skipping end-effector pose: {error}")
            return
        frame = msg.header.frame_id or self._param("frame_id")
        self._inputs.set_pose(state, frame, stamp_seconds(msg))

    def _on_gripper(self, msg: JointState) -> None:
        try:
            self._inputs.set_gripper(gripper_closedness(msg), stamp_seconds(msg))
        except MessageError as error:
            self.get_logger().warning(f"skipping gripper state: {error}")

    def _on_goal_image(self, msg: Image) -> None:
        try:
            self._inputs.set_goal(image_to_array(msg), keep_state=True)
        except MessageError as error:
            self.get_logger().error(f"rejecting goal image: {error}")
            return
        self.get_logger().info(f"new goal image {msg.width}x{msg.height} from topic")

    def _on_goal_state(self, msg: Float64MultiArray) -> None:
        state = np.asarray(msg.data, dtype=np.float64)
        if state.shape != (7,) or not np.all(np.isfinite(state)):
            self.get_logger().error(f"rejecting goal state {state.tolist()}: need 7 finite numbers")
            return
        self._inputs.set_goal_state(state)

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response):
        self.set_parameters([Parameter("enabled", value=False)])
        response.success, response.message = True, "e-stop latched: holding the current pose"
        return response

    def _on_enable(self, request: Trigger.Request, response: Trigger.Response):
        self.set_parameters([Parameter("enabled", value=True)])
        response.success, response.message = True, "enabled: planning resumes"
        return response

    def _on_set_goal(self, request: Trigger.Request, response: Trigger.Response):
        path = self._param("goal_image")
        try:
            self._inputs.set_goal(read_goal_image(path))
        except GoalImageError as error:
            response.success, response.message = False, str(error)
            return response
        response.success, response.message = True, f"goal image loaded from {path}"
        self.get_logger().info(response.message)
        return response

    def _validate_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name in ("rate_hz", "watchdog_s") and not float(p.value) > 0:
                return SetParametersResult(successful=False, reason=f"{p.name} must be > 0")
            if p.name not in RUNTIME_PARAMETERS and p.name in PARAMETERS:
                return SetParametersResult(
                    successful=False, reason=f"{p.name} is fixed at start; restart the node"
                )
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name == "enabled":
                with self._gate:
                    self._enabled = bool(p.value)
                if self._enabled:  # (rclpy wants one severity per logging call site)
                    self.get_logger().info("enabled: planning resumes")
                else:
                    self.get_logger().warning("e-stop latched: holding the pose")
            elif p.name == "rate_hz":
                self._rate_hz = float(p.value)
            elif p.name == "watchdog_s":
                self._watchdog_s = float(p.value)

    # -- the planning thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self._cycle(self._await_fresh_inputs())
            except Exception as error:  # noqa: BLE001 - keep the node alive, report loudly
                self.get_logger().error(f"planning cycle failed: {error!r}")
                self._report("error", DiagnosticStatus.ERROR, repr(error), {})
            next_tick += 1.0 / self._rate_hz
            now = time.monotonic()
            if next_tick < now:  # overran: start the next cycle now, do not try to catch up
                next_tick = now
            self._stop_event.wait(next_tick - now)

    def _await_fresh_inputs(self) -> Snapshot:
        """The inputs to plan on. With ``fresh_inputs``, after a planned command wait (up to
        ``watchdog_s``) until the image, pose and gripper state are all stamped after it, so no
        plan starts from the scene as it was before the command it follows (a sim steps on the
        command at its next tick; a camera frame may be in flight)."""
        after, snap = self._last_command_s, self._inputs.snapshot()
        if after is None:
            return snap
        deadline = time.monotonic() + self._watchdog_s
        while snap.inputs_stamp_s <= after and not self._stop_event.is_set():
            if time.monotonic() >= deadline:
                self._last_command_s = None  # do not wait again until the next command
                self.get_logger().warning(
                    f"no image, pose and gripper state stamped after the last command within "
                    f"watchdog_s {self._watchdog_s:g}; using the latest (sensor clocks behind "
                    "this node's? sync them, or set fresh_inputs:=false)",
                    throttle_duration_sec=10.0,
                )
                break
            self._stop_event.wait(0.005)
            snap = self._inputs.snapshot()
        return snap

    def _cycle(self, snap: Snapshot) -> None:
        """One control cycle: decide between waiting, holding and planning, then publish. The
        decision and the publishing run under the gate; the planning itself does not."""
        with self._gate:
            if not self._ready_to_plan(snap):
                return
        goal = {"image": snap.goal_image}
        if snap.goal_state is not None:
            goal["state"] = snap.goal_state.astype(np.float32)
        started = time.monotonic()
        plan = self._planner.plan(
            {"image": snap.image, "state": snap.state.astype(np.float32)}, goal
        )
        plan_s = time.monotonic() - started
        with self._gate:
            if not self._enabled:  # stopped while planning: do not send the stale plan
                self._hold(snap, "stopped", "e-stop latched; call ~/enable to resume")
                return
            action = torch.from_numpy(np.asarray(plan.action, dtype=np.float64))
            target = self._safety.target(torch.from_numpy(snap.state), action).numpy()
            if self._fresh_inputs:
                self._last_command_s = self._now_s()
            target = self._publish_target(target, snap)
            self._report(
                "planning",
                DiagnosticStatus.OK,
                "planning",
                {
                    "energy": float(plan.energy),
                    "plan_ms": 1e3 * plan_s,
                    "image_to_command_ms": 1e3 * (self._now_s() - snap.image_stamp_s),
                    "receipt_to_command_ms": 1e3 * (time.monotonic() - snap.image_received),
                    "target": np.round(target, 4).tolist(),
                },
            )

    def _ready_to_plan(self, snap: Snapshot) -> bool:
        """Whether this cycle should plan; if not, report (and hold) why. Call under the gate."""
        if snap.state is None:
            self._report("waiting", DiagnosticStatus.WARN, "no end-effector state yet", {})
            return False
        if not self._enabled:
            self._hold(snap, "stopped", "e-stop latched; call ~/enable to resume")
            return False
        stale = self._stale(snap)
        if stale:
            self.get_logger().warning(f"watchdog: {stale}; holding", throttle_duration_sec=2.0)
            self._hold(snap, "hold", f"watchdog: {stale}")
            return False
        if snap.goal_image is None:
            self._report("waiting", DiagnosticStatus.WARN, "no goal image yet", {})
            return False
        if self._needs_goal_state and snap.goal_state is None:
            self._report("waiting", DiagnosticStatus.WARN, "no goal state yet (state model)", {})
            return False
        if self._mode != "planning" or self._planned_goal != snap.goal_version:
            self._planner.reset()  # warm start is only valid for one goal, uninterrupted
            self._planned_goal = snap.goal_version
        return True

    def _stale(self, snap: Snapshot) -> str:
        """Why the inputs are too old to act on ('' if fresh)."""
        now = time.monotonic()
        if snap.image is None:
            return "no camera image yet"
        for name, received in (
            ("camera image", snap.image_received),
            ("state", snap.state_received),
        ):
            if now - received > self._watchdog_s:
                return f"{name} is {now - received:.2f} s old (> watchdog_s {self._watchdog_s:g})"
        return ""

    def _hold(self, snap: Snapshot, mode: str, reason: str) -> None:
        """Command the last measured pose and gripper, so the arm stays where it is."""
        self._publish_target(snap.state, snap)
        self._report(
            mode, DiagnosticStatus.WARN, reason, {"target": np.round(snap.state, 4).tolist()}
        )

    def _publish_target(self, target: np.ndarray, snap: Snapshot) -> np.ndarray:
        """Publish ``target`` [7] as pose + gripper command, or, if ``unsafe_target`` objects,
        the measured pose (hold) with an error in the log; returns what was published."""
        problem = unsafe_target(target, snap.state, self._safety.limits)
        if problem:
            self.get_logger().error(
                f"refusing to command target {np.asarray(target).tolist()}: {problem}; "
                "holding the current pose"
            )
            target = snap.state
        pose, gripper = state_to_pose(target, snap.frame_id, self.get_clock().now().to_msg())
        self._target_pub.publish(pose)
        self._gripper_pub.publish(Float64(data=gripper))
        return target

    def _report(self, mode: str, level: bytes, message: str, values: dict) -> None:
        self._mode = mode
        snap = self._inputs.snapshot()
        values = {
            "mode": mode,
            "enabled": self._enabled,
            "rejected_images": self._rejected_images,
            "last_rejection": self._last_rejection,
            "state": None if snap.state is None else np.round(snap.state, 4).tolist(),
            **values,
        }
        self._publish_diagnostics(level, message, values)

    def _publish_diagnostics(self, level: bytes, message: str, values: dict) -> None:
        status = DiagnosticStatus(
            level=level,
            name=self.get_fully_qualified_name(),
            message=message,
            hardware_id="franka",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``goal_planner`` (ROS arguments: ``--ros-args -p key:=value``)."""
    return run_node(GoalPlannerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
