"""``goal_planner`` node: camera image + end-effector state + goal image in, the next safe
Cartesian target (``PoseStamped``) and gripper command out, planned by ``planner.Planner`` on a
worker thread at ``rate_hz``. No planning logic lives here; the node adds the robot-side safety:
inputs checked message by message (``streams``: stamps in order and fresh, poses the arm could
have reached, images and goals by the planner's rules; every rejection counted), every command,
planned or hold, through ``guard.CommandGuard`` (inside the box, within one step of the last
command and of the arm), a watchdog hold when inputs go stale, a latched e-stop (``~/stop``;
cleared by ``~/enable`` or ``enabled:=true``), diagnostics on ``/diagnostics``, and a clean
shutdown whose last command is a hold (``begin_shutdown``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger

from planner_ros.conversions import state_to_pose
from planner_ros.diagnostics import OK, WARN, Reporter
from planner_ros.goal_params import (
    DYNAMIC_TYPES,
    PARAMETERS,
    cpu_threads,
    parameter_problem,
    start_problem,
)
from planner_ros.guard import CommandGuard
from planner_ros.inputs import GoalImageError, InputBuffer, Snapshot, read_goal_image
from planner_ros.models import (
    build_planner,
    parse_verify,
    preset_for,
    verification,
    verify_name,
)
from planner_ros.process import run_node
from planner_ros.streams import InputChecks, InputRejected, RejectionCounter, stale_reason
from planner_ros.topics import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from robots.franka import load_limits


class GoalPlannerNode(Node):
    """The goal-image MPC node (see the module docstring and ``ros_ws/README.md``)."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("goal_planner", **node_kwargs)
        for name, default in PARAMETERS.items():
            dynamic = ParameterDescriptor(dynamic_typing=name in DYNAMIC_TYPES)
            self.declare_parameter(name, default, dynamic)
        problem = start_problem({name: self._param(name) for name in PARAMETERS})
        if problem:
            raise ValueError(problem)
        self._load_planner()
        self._init_state()
        self._init_ros()
        self._worker = threading.Thread(target=self._run, name="goal-planner", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"planning with preset {self._preset!r} on {self._param('checkpoint')!r} "
            f"at {self._rate_hz:g} Hz; watchdog {self._watchdog_s:g} s; "
            f"enabled={self._enabled}; checkpoint {self._verification}"
        )

    def _load_planner(self) -> None:
        """The planner on the verified checkpoint (one clear error when it is refused)."""
        param = self._param
        self._verify = parse_verify(param("verify"))
        overrides = [o for o in param("planner_overrides") or [] if o.strip()]
        self._preset = preset_for(param("config"), param("checkpoint"))
        self._planner = build_planner(
            self._preset, param("checkpoint"), param("device"), overrides, self._verify
        )
        self._verification = verification(param("checkpoint"), self._verify)
        threads = cpu_threads(int(param("cpu_threads")))
        if threads is not None and self._planner.device.type == "cpu":
            torch.set_num_threads(threads)
        # The ground-truth-state model reads the goal's state, not its pixels.
        self._needs_goal_state = param("checkpoint") == "state"

    def _init_state(self) -> None:
        """The guard, the input checks and buffer, and the planning thread's state."""
        param = self._param
        self._limits = load_limits(param("robot_limits"))
        self._guard = CommandGuard(self._limits, float(param("resync_s")))
        self._inputs = InputBuffer()
        self._rejections = RejectionCounter()
        self._enabled = bool(param("enabled"))
        self._rate_hz, self._watchdog_s = float(param("rate_hz")), float(param("watchdog_s"))
        self._frame_id = str(param("frame_id"))
        self._checks = InputChecks(self._limits, self._frame_id, self._now_s, self._watchdog_s)
        self._checks.skew_s = float(param("clock_skew_s"))
        self._mode = "starting"
        self._planned_goal = -1
        self._refused = 0  # planned targets the guard refused
        self._fresh_inputs = bool(param("fresh_inputs"))
        self._last_command_s: float | None = None  # ROS time of the last planned command
        self._stop_event = threading.Event()
        # Held while a cycle decides and publishes (not while it plans), while `enabled`
        # changes and while shutting down: once ~/stop has answered, or the final hold is out,
        # no cycle can publish anything else.
        self._gate = threading.Lock()
        self._closing = False
        self._planning = False  # the worker is inside Planner.plan

    def _init_ros(self) -> None:
        """Publishers, subscriptions, services and parameter callbacks; the goal file."""
        param = self._param
        self._target_pub = self.create_publisher(PoseStamped, param("target_topic"), COMMAND_QOS)
        self._gripper_pub = self.create_publisher(
            Float64, param("gripper_command_topic"), COMMAND_QOS
        )
        self._reporter = Reporter(self, param("diagnostics_topic"))
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

    def _param(self, name: str):
        return self.get_parameter(name).value

    def begin_shutdown(self) -> None:
        """Stop planning and send the final command, a hold; nothing is published after it
        (a plan still running on the worker thread is discarded when it returns)."""
        self._stop_event.set()
        with self._gate:
            if self._closing:
                return
            during = "; the plan in progress is discarded" if self._planning else ""
            self._hold(self._inputs.snapshot(), "shutdown", f"shutting down: final hold{during}")
            self._closing = True
        deadline = time.monotonic() + 0.3  # let the hold reach its readers; bounded
        for publisher in (self._target_pub, self._gripper_pub, self._reporter.publisher):
            left = max(deadline - time.monotonic(), 0.0)
            publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))

    def destroy_node(self) -> None:
        """Final hold (``begin_shutdown``), then destroy the node. The planning thread is
        joined only between plans: a plan still in torch finishes on its own, is discarded,
        and the thread ends (or the process exits first, ``process.exit_code``)."""
        self.begin_shutdown()
        if self._worker.is_alive() and not self._planning:
            self._worker.join(timeout=0.5)
        super().destroy_node()

    # -- callbacks (the executor thread): check, then store the latest inputs -----------------

    def _checked(self, kind: str, check: Callable, msg):
        """``check(msg)``, or None after counting (and, throttled, logging) its rejection."""
        try:
            return check(msg)
        except InputRejected as error:
            line = self._rejections.add(kind, error.rejection)
            if line is not None:
                self.get_logger().warning(line)
            return None

    def _on_image(self, msg: Image) -> None:
        checked = self._checked("image", self._checks.image, msg)
        if checked is not None:
            self._inputs.set_image(*checked)

    def _on_pose(self, msg: PoseStamped) -> None:
        checked = self._checked("pose", self._checks.pose, msg)
        if checked is not None:
            self._inputs.set_pose(*checked)

    def _on_gripper(self, msg: JointState) -> None:
        checked = self._checked("gripper", self._checks.gripper, msg)
        if checked is not None:
            self._inputs.set_gripper(*checked)

    def _on_goal_image(self, msg: Image) -> None:
        image = self._checked("goal", self._checks.goal_image, msg)
        if image is not None:
            self._inputs.set_goal(image, keep_state=True)
            self.get_logger().info(f"new goal image {msg.width}x{msg.height} from topic")

    def _on_goal_state(self, msg: Float64MultiArray) -> None:
        state = self._checked("goal", self._checks.goal_state, msg.data)
        if state is not None:
            self._inputs.set_goal_state(state)

    def _on_stop(self, request: Trigger.Request, response: Trigger.Response):
        self.set_parameters([Parameter("enabled", value=False)])
        response.success, response.message = True, "e-stop latched: holding"
        return response

    def _on_enable(self, request: Trigger.Request, response: Trigger.Response):
        self.set_parameters([Parameter("enabled", value=True)])
        response.success = True
        response.message = "enabled: planning resumes from the measured pose"
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
            problem = parameter_problem(p.name, p.value)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name == "enabled":
                self._set_enabled(bool(p.value))
            elif p.name == "rate_hz":
                self._rate_hz = float(p.value)
            elif p.name == "watchdog_s":
                self._watchdog_s = self._checks.max_age_s = float(p.value)
            elif p.name == "clock_skew_s":
                self._checks.skew_s = float(p.value)
            elif p.name == "resync_s":
                self._guard.resync_s = float(p.value)

    def _set_enabled(self, enabled: bool) -> None:
        with self._gate:
            resumed = enabled and not self._enabled
            self._enabled = enabled
            if resumed:  # the operator vouches for the arm's pose: re-anchor there
                self._guard.release()
        if enabled:  # (rclpy wants one severity per logging call site)
            self.get_logger().info("enabled: planning resumes from the measured pose")
        else:
            self.get_logger().warning("e-stop latched: holding")

    # -- the planning thread -------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self._cycle(self._await_fresh_inputs())
            except Exception as error:  # noqa: BLE001 - keep the node alive, hold, report
                self._on_cycle_error(error)
            next_tick += 1.0 / self._rate_hz
            now = time.monotonic()
            if next_tick < now:  # overran: start the next cycle now, do not try to catch up
                next_tick = now
            self._stop_event.wait(next_tick - now)

    def _on_cycle_error(self, error: Exception) -> None:
        with self._gate:
            if self._closing:
                return
            self._hold(self._inputs.snapshot(), "error", f"planning failed: {error!r}")
        self.get_logger().error(
            f"planning cycle failed: {error!r}; holding", throttle_duration_sec=5.0
        )

    def _await_fresh_inputs(self) -> Snapshot:
        """The inputs to plan on. With ``fresh_inputs``, after a planned command wait (up to
        ``watchdog_s``) until the image, pose and gripper state are all stamped after it, so no
        plan starts from the scene as it was before the command it follows (a sim steps on the
        command at its next tick; a camera frame may be in flight)."""
        if self._last_command_s is None:
            return self._inputs.snapshot()
        snap, fresh = self._inputs.wait_newer(
            self._last_command_s, self._watchdog_s, self._stop_event
        )
        if not fresh and not self._stop_event.is_set():
            self._last_command_s = None  # do not wait again until the next command
            self.get_logger().warning(
                f"no image, pose and gripper state stamped after the last command within "
                f"watchdog_s {self._watchdog_s:g}; using the latest (sensor clocks behind "
                "this node's? sync them, or set fresh_inputs:=false)",
                throttle_duration_sec=10.0,
            )
        return snap

    def _cycle(self, snap: Snapshot) -> None:
        """One control cycle: decide between waiting, holding and planning, then publish. The
        decision and the publishing run under the gate; the planning itself does not."""
        with self._gate:
            if self._closing or not self._ready_to_plan(snap):
                return
        goal = {"image": snap.goal_image}
        if snap.goal_state is not None:
            goal["state"] = snap.goal_state.astype(np.float32)
        started = time.monotonic()
        self._planning = True
        try:
            plan = self._planner.plan(
                {"image": snap.image, "state": snap.state.astype(np.float32)}, goal
            )
        finally:
            self._planning = False
        plan_s = time.monotonic() - started
        with self._gate:
            if self._closing:  # shutting down: the final hold is out, send nothing after it
                return
            if not self._enabled:  # stopped while planning: do not send the stale plan
                self._hold(snap, "stopped", "e-stop latched; call ~/enable to resume")
                return
            action = torch.from_numpy(np.asarray(plan.action, dtype=np.float64))
            planned = self._guard.bound(
                self._planner.safety.target(torch.from_numpy(snap.state), action).numpy(),
                snap.state,
            )
            values = {
                "energy": float(plan.energy),
                "plan_ms": 1e3 * plan_s,
                "image_to_command_ms": 1e3 * (self._now_s() - snap.image_stamp_s),
                "receipt_to_command_ms": 1e3 * (time.monotonic() - snap.image_received),
                "input_stamps": [snap.image_stamp_s, snap.state_stamp_s, snap.gripper_stamp_s],
            }
            if self._command_plan(planned, snap):
                if self._fresh_inputs:
                    self._last_command_s = self._now_s()
                self._report("planning", OK, "planning", {**values, "target": planned})

    def _ready_to_plan(self, snap: Snapshot) -> bool:
        """Whether this cycle should plan; if not, report (and hold) why. Call under the gate."""
        if snap.state is None:
            self._report("waiting", WARN, "no end-effector state yet", {})
            return False
        if not self._enabled:
            self._hold(snap, "stopped", "e-stop latched; call ~/enable to resume")
            return False
        stale = stale_reason(snap, self._watchdog_s, self._rejections)
        if stale:
            self.get_logger().warning(f"watchdog: {stale}; holding", throttle_duration_sec=2.0)
            self._hold(snap, "hold", f"watchdog: {stale}")
            return False
        if self._guard.update_resync(snap.state, time.monotonic()):
            self.get_logger().warning(
                f"the arm stayed more than a step from the last command for resync_s "
                f"{self._guard.resync_s:g}: re-anchoring at the measured pose"
            )
        far = self._guard.arm_far(snap.state)
        if far:
            self._hold(snap, "hold", f"the arm moved away: measured pose: {far}")
            return False
        if snap.goal_image is None:
            self._report("waiting", WARN, "no goal image yet", {})
            return False
        if self._needs_goal_state and snap.goal_state is None:
            self._report("waiting", WARN, "no goal state yet (state model)", {})
            return False
        if self._mode != "planning" or self._planned_goal != snap.goal_version:
            self._planner.reset()  # warm start is only valid for one goal, uninterrupted
            self._planned_goal = snap.goal_version
        return True

    # -- commands (under the gate) ------------------------------------------------------------

    def _command_plan(self, target: np.ndarray, snap: Snapshot) -> bool:
        """Publish a planned ``target`` [7] if the guard allows it (True), else hold (False)."""
        problem = self._guard.why_unsafe(target, snap.state)
        if not problem:
            self._publish(target, hold=False)
            return True
        self._refused += 1
        self.get_logger().error(
            f"refusing to command planned target {np.round(target, 4).tolist()}: {problem}; "
            "holding",
            throttle_duration_sec=2.0,
        )
        self._hold(snap, "hold", f"refused the planned target: {problem}")
        return False

    def _hold(self, snap: Snapshot, mode: str, reason: str) -> np.ndarray | None:
        """Command the guard's hold target, or nothing (and say why); returns what was sent."""
        target, why_none = self._guard.hold_target(snap.state)
        if target is None:
            self._report(mode, WARN, f"{reason}; commanding nothing: {why_none}", {})
            return None
        self._publish(target, hold=True)
        self._report(mode, WARN, reason, {"target": target})
        return target

    def _publish(self, target: np.ndarray, hold: bool) -> None:
        pose, gripper = state_to_pose(target, self._frame_id, self.get_clock().now().to_msg())
        self._target_pub.publish(pose)
        self._gripper_pub.publish(Float64(data=gripper))
        self._guard.commit(target, hold)

    def _report(self, mode: str, level: bytes, message: str, values: dict) -> None:
        self._mode = mode
        snap = self._inputs.snapshot()
        totals = self._rejections.totals()
        target = values.pop("target", None)
        self._reporter.publish(
            level,
            message,
            {
                "mode": mode,
                "enabled": self._enabled,
                "target": "none" if target is None else np.round(target, 4).tolist(),
                "state": None if snap.state is None else np.round(snap.state, 4).tolist(),
                "rejected_images": totals["image"],
                "rejected_poses": totals["pose"],
                "rejected_grippers": totals["gripper"],
                "rejected_goals": totals["goal"],
                "rejections": self._rejections.by_reason(),
                "last_rejection": self._rejections.last,
                "refused_commands": self._refused,
                "reanchors": self._guard.reanchors,
                "verify": verify_name(self._verify),
                "checkpoint": self._verification,
                **values,
            },
        )

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``goal_planner`` (ROS arguments: ``--ros-args -p key:=value``)."""
    return run_node(GoalPlannerNode, "goal_planner", argv)


if __name__ == "__main__":
    sys.exit(main())
