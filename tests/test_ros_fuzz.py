"""A running ``goal_planner`` (real rclpy on loopback, ground-truth-state model) under hostile
input, played by a robot harness whose arm moves to every commanded target: far poses under the
e-stop and the watchdog hold, spoofed and stale poses, tiny and oversized images, bad goals and
a flood. Across all of it, every command that leaves the node is inside the workspace box and
within one step of the command before it (issue 12), and every rejection is counted on
``/diagnostics`` (by stream and reason, never more often than messages were sent).

The node runs with ``fresh_inputs`` false (stale inputs were worst there) and ``resync_s`` 0
(never re-anchor by itself); ``~/enable`` re-anchors by design and is only called while the
harness streams the true pose. Waits are generous (60 s): CI has 2 slow shared cores.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")

ROS_PACKAGE = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "planner"
if str(ROS_PACKAGE) not in sys.path:  # not pip-installed: use the source tree
    sys.path.insert(0, str(ROS_PACKAGE))

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from planner_ros.conversions import (  # noqa: E402
    array_to_image,
    finger_positions,
    pose_to_state,
    state_to_pose,
)
from planner_ros.goal_planner import GoalPlannerNode  # noqa: E402
from planner_ros.runtime import as_parameters, init_context, spin_nodes, wait_for  # noqa: E402
from planner_ros.topics import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64, Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from robots.franka import FrankaLimits, euler_to_matrix, matrix_to_rotvec  # noqa: E402

DOMAIN_ID = 40 + os.getpid() % 50  # unique per test module and process
LIMITS = FrankaLimits()
LOWER, UPPER = np.array(LIMITS.workspace.lower), np.array(LIMITS.workspace.upper)
START = np.array([0.46, 0.0, 0.30, np.pi, 0.0, 0.0, 0.0])
GOAL_STATE = np.array([0.56, 0.12, 0.22, np.pi, 0.0, 0.0, 0.0])
LIVENESS_S = 60.0


class HostileRobot:
    """Publishes what a robot would at 20 Hz (camera, TCP pose, gripper), its arm jumping to
    each commanded target, and on request the hostile variants; records all it receives."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("hostile_robot", context=context)
        self.lock = threading.Lock()
        self.arm = START.copy()
        self.pose_override: np.ndarray | None = None  # published instead of the arm's pose
        self.pose_age_s = 0.0  # > 0: replay the arm's pose from this long ago, stamped then;
        # < 0: the current pose stamped this far in the future
        self.history: list[tuple[float, np.ndarray]] = []  # (monotonic, arm) per tick
        self.spoof_offset: np.ndarray | None = None  # a second pose stream, arm + offset
        self.image: Image | None = None  # a bad camera image, sent instead of the good one
        self.send_images = True
        self.sent: dict[str, int] = {"pose": 0, "image": 0, "goal": 0, "gripper": 0}
        self.commands: list[np.ndarray] = []
        self.diagnostics: list[dict] = []
        self.logs: list[Log] = []
        node = self.node
        self.image_pub = node.create_publisher(Image, "camera/image", SENSOR_QOS)
        self.pose_pub = node.create_publisher(PoseStamped, "ee_pose", SENSOR_QOS)
        self.gripper_pub = node.create_publisher(JointState, "gripper/joint_states", SENSOR_QOS)
        self.goal_image_pub = node.create_publisher(Image, "goal/image", LATCHED_QOS)
        self.goal_state_pub = node.create_publisher(Float64MultiArray, "goal/state", LATCHED_QOS)
        self.goal_image_pub.publish(array_to_image(np.full((32, 32, 3), 200, np.uint8)))
        self.goal_state_pub.publish(Float64MultiArray(data=GOAL_STATE.tolist()))
        node.create_subscription(PoseStamped, "target_pose", self._on_target, COMMAND_QOS)
        node.create_subscription(Float64, "gripper/command", lambda msg: None, COMMAND_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        node.create_subscription(Log, "/rosout", self._on_log, 200)
        self.stop = node.create_client(Trigger, "goal_planner/stop")
        self.enable = node.create_client(Trigger, "goal_planner/enable")
        self.rng = np.random.default_rng(0)
        node.create_timer(0.05, self._tick)

    # -- publishing ---------------------------------------------------------------------------

    def stamp(self, age_s: float = 0.0):
        now = self.node.get_clock().now().nanoseconds - int(age_s * 1e9)
        return Time(nanoseconds=now).to_msg()

    def publish_pose(self, state: np.ndarray, age_s: float = 0.0) -> None:
        self.pose_pub.publish(state_to_pose(state, "base", self.stamp(age_s))[0])
        with self.lock:
            self.sent["pose"] += 1

    def _delayed(self, arm: np.ndarray, age_s: float) -> np.ndarray:
        """Where the arm was ``age_s`` ago (a replayed, delayed pose stream)."""
        now = time.monotonic()
        self.history = [(t, a) for t, a in self.history if now - t < 30.0] + [(now, arm)]
        if age_s <= 0:
            return arm
        return next((a for t, a in reversed(self.history) if now - t >= age_s), self.history[0][1])

    def _tick(self) -> None:
        with self.lock:
            arm, override, age = self.arm.copy(), self.pose_override, self.pose_age_s
            spoof, bad_image, send_images = self.spoof_offset, self.image, self.send_images
            reported = self._delayed(arm, age)
        self.publish_pose(reported if override is None else override, age)
        fingers = JointState(name=["fr3_finger_joint1", "fr3_finger_joint2"])
        fingers.header.stamp = self.stamp()
        fingers.position = list(finger_positions(arm[6]))
        self.gripper_pub.publish(fingers)
        if bad_image is not None:
            bad_image.header.stamp = self.stamp()
            self.image_pub.publish(bad_image)
            with self.lock:
                self.sent["image"] += 1
        elif send_images:
            image = self.rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            self.image_pub.publish(array_to_image(image, "rgb8", "camera", self.stamp()))
        if spoof is not None:  # interleaved: a bogus pose with a current stamp
            time.sleep(0.01)
            self.publish_pose(arm + spoof)

    # -- receiving ----------------------------------------------------------------------------

    def _on_target(self, msg: PoseStamped) -> None:
        target = pose_to_state(msg, 0.0)
        with self.lock:
            self.commands.append(target)
            self.arm[:6] = target[:6]  # the arm follows its commands

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "/goal_planner":
                entry = {kv.key: kv.value for kv in status.values}
                entry["message"] = status.message
                with self.lock:
                    self.diagnostics.append(entry)

    def _on_log(self, msg: Log) -> None:
        with self.lock:
            self.logs.append(msg)

    # -- queries ------------------------------------------------------------------------------

    def latest(self) -> dict:
        with self.lock:
            return dict(self.diagnostics[-1]) if self.diagnostics else {}

    def rejections(self) -> dict[str, int]:
        latest = self.latest()
        return json.loads(latest["rejections"]) if "rejections" in latest else {}

    def wait_mode(self, mode: str, timeout_s: float = LIVENESS_S) -> dict:
        with self.lock:
            start = len(self.diagnostics)

        def found() -> dict | None:
            with self.lock:
                return next((d for d in self.diagnostics[start:] if d["mode"] == mode), None)

        assert wait_for(lambda: found() is not None, timeout_s), f"no {mode!r} diagnostics"
        return found()

    def wait_rejected(self, key: str, more_than: int = 0) -> int:
        assert wait_for(lambda: self.rejections().get(key, 0) > more_than, LIVENESS_S), (
            key,
            self.rejections(),
        )
        return self.rejections()[key]

    def call(self, client) -> None:
        assert client.wait_for_service(timeout_sec=LIVENESS_S)
        future = client.call_async(Trigger.Request())
        assert wait_for(future.done, LIVENESS_S) and future.result().success

    def wait_arm_near(self, state: np.ndarray, tolerance_m: float = 0.02) -> None:
        def near() -> bool:
            with self.lock:
                return float(np.linalg.norm(self.arm[:3] - state[:3])) < tolerance_m

        assert wait_for(near, LIVENESS_S), (self.arm, state)

    def wait_tracking(self) -> None:
        """Until the planner's measured state is the arm's again (its pose accepted)."""

        def tracking() -> bool:
            state = self.latest().get("state")
            with self.lock:
                arm = self.arm.copy()
            return state not in (None, "None") and np.allclose(
                json.loads(state)[:3], arm[:3], atol=2e-3
            )

        assert wait_for(tracking, LIVENESS_S), (self.latest(), self.arm)


def rotation_step(a: np.ndarray, b: np.ndarray) -> float:
    import torch

    ra = euler_to_matrix(torch.from_numpy(a[3:6]))
    rb = euler_to_matrix(torch.from_numpy(b[3:6]))
    return float(matrix_to_rotvec(ra @ rb.transpose(-1, -2)).norm())


def assert_every_command_safe(robot: HostileRobot) -> int:
    """The acceptance invariant over every command received so far; returns their number."""
    with robot.lock:
        commands = list(robot.commands)
    step = LIMITS.step
    for index, command in enumerate(commands):
        assert np.all(command[:3] >= LOWER - 1e-6) and np.all(command[:3] <= UPPER + 1e-6), (
            index,
            command,
        )
        if index:
            previous = commands[index - 1]
            moved = np.linalg.norm(command[:3] - previous[:3])
            assert moved <= step.translation + 1e-6, (index, moved, previous, command)
            assert rotation_step(command, previous) <= step.rotation + 1e-6, index
    return len(commands)


@pytest.fixture(scope="module")
def robot():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
        patch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = init_context(DOMAIN_ID)
        planner = GoalPlannerNode(
            context=context,
            parameter_overrides=as_parameters(
                {
                    "checkpoint": "state",
                    "config": "cem_paper",
                    "device": "cpu",
                    "planner_overrides": ["actor.samples=64", "actor.elites=8"],
                    "rate_hz": 10.0,
                    "watchdog_s": 1.0,
                    "fresh_inputs": False,
                    "resync_s": 0.0,
                }
            ),
        )
        harness = HostileRobot(context)
        try:
            with spin_nodes(context, [planner, harness.node]):
                harness.wait_mode("planning")
                yield harness
        finally:
            planner.destroy_node()
            harness.node.destroy_node()
            rclpy.shutdown(context=context)
    checked = assert_every_command_safe(harness)
    rejected = harness.rejections()
    print(f"\nfuzz: {checked} commands checked; sent {harness.sent}; rejected {rejected}")


def test_far_poses_under_the_estop_command_nothing_outside_the_box(robot):
    """Defect 1: with the e-stop latched, the hold used to be whatever pose was reported
    ((1e6, 0, 0.3) every cycle)."""
    robot.call(robot.stop)
    robot.wait_mode("stopped")
    malformed = robot.rejections().get("pose/malformed", 0)
    for far, seconds in (([1e6, 0.0, 0.3], 1.0), ([2.0, 0.0, 0.3], 2.0)):
        with robot.lock:
            robot.pose_override = np.array([*far, np.pi, 0.0, 0.0, 0.0])
        time.sleep(seconds)
    with robot.lock:
        robot.pose_override = None
    assert_every_command_safe(robot)
    robot.wait_rejected("pose/malformed", malformed)  # 1e6 m: the planner's 10 m rule
    robot.wait_rejected("pose/jump")  # 2 m at once: faster than the arm moves
    assert robot.wait_mode("stopped")["mode"] == "stopped"
    robot.wait_tracking()
    robot.call(robot.enable)  # only while the true pose streams: ~/enable re-anchors there
    robot.wait_mode("planning")
    assert assert_every_command_safe(robot) > 0


def test_far_poses_under_the_watchdog_hold_command_nothing_outside_the_box(robot):
    with robot.lock:
        robot.send_images = False
    try:
        hold = robot.wait_mode("hold")
        assert "watchdog" in hold["message"]
        jumps = robot.rejections().get("pose/jump", 0)
        with robot.lock:
            robot.pose_override = np.array([0.9, 0.5, 0.3, np.pi, 0.0, 0.0, 0.0])  # 0.5 m away
        time.sleep(1.0)
        with robot.lock:
            robot.pose_override = None
        assert_every_command_safe(robot)
        robot.wait_rejected("pose/jump", jumps)
        robot.wait_tracking()
    finally:
        with robot.lock:
            robot.send_images = True
    robot.wait_mode("planning")
    assert_every_command_safe(robot)


def test_spoofed_poses_are_rejected_and_bound_no_command(robot):
    """Defect 2: a bogus pose with a current stamp, interleaved with the real one, produced
    commands 5.6-18 cm from the true arm."""
    jumps = robot.rejections().get("pose/jump", 0)
    with robot.lock:
        count = len(robot.commands)
    for offset in ([0.06, 0.0, 0.0], [0.0, -0.12, 0.05], [0.18, 0.0, 0.0]):
        with robot.lock:
            robot.spoof_offset = np.array([*offset, 0.0, 0.0, 0.0, 0.0])
        time.sleep(1.0)
    with robot.lock:
        robot.spoof_offset = None
    assert_every_command_safe(robot)
    robot.wait_rejected("pose/jump", jumps)
    robot.wait_mode("planning")
    with robot.lock:
        assert len(robot.commands) > count  # it kept commanding (safely) throughout


def test_stale_future_and_unordered_poses_are_rejected_in_every_mode(robot):
    """Defect 2: with fresh_inputs false, poses stamped 5 s ago drove commands 23-42 cm away
    with no warning."""
    # The arm rests at START for 5.5 s, then moves to the goal: 5 s later the delayed stream
    # replays it at START, far from where it is (and from the last command).
    for goal in (START, GOAL_STATE):
        robot.goal_state_pub.publish(Float64MultiArray(data=goal.tolist()))
        robot.wait_arm_near(goal)
        if goal is START:
            time.sleep(5.5)
    before = robot.rejections()
    for age, reason in ((5.0, "pose/stale"), (-5.0, "pose/future")):
        with robot.lock:
            robot.pose_age_s = age
        time.sleep(3.0)
        assert_every_command_safe(robot)
        robot.wait_rejected(reason, before.get(reason, 0))
        robot.wait_mode("hold")  # no pose accepted: the watchdog holds
    with robot.lock:
        robot.pose_age_s = 0.0
    robot.wait_mode("planning")
    order = robot.rejections().get("pose/order", 0)
    with robot.lock:
        arm = robot.arm.copy()
    robot.publish_pose(arm, age_s=0.9)  # not stale, but older than the last one
    robot.wait_rejected("pose/order", order)
    logs = [log.msg for log in robot.logs if "rejecting pose: stamped" in log.msg]
    assert logs, "stale poses are not logged"
    assert_every_command_safe(robot)


def _image(height: int, width: int) -> Image:
    return array_to_image(np.zeros((height, width, 3), np.uint8), "rgb8", "camera")


def test_tiny_and_oversized_images_are_rejected_and_the_node_holds(robot):
    """Defect 5: a 1x1 camera image passed the ROS checks, then every cycle raised
    PlanInputError and no command at all went out."""
    for bad in (_image(1, 1), _image(4, 4), _image(8, 4097)):
        before = robot.rejections().get("image/malformed", 0)
        with robot.lock:
            robot.image = bad
            count = len(robot.commands)
        try:
            # Holding means commanding: commands (holds) keep going out.
            time.sleep(2.0)
            assert wait_for(lambda count=count: len(robot.commands) > count + 2, LIVENESS_S)
            hold = robot.wait_mode("hold")
            assert "newer ones rejected" in hold["message"], hold["message"]
            robot.wait_rejected("image/malformed", before)
        finally:
            with robot.lock:
                robot.image = None
        robot.wait_mode("planning")
    errors = [d for d in robot.diagnostics if d["mode"] == "error"]
    assert not errors, errors[:1]
    assert_every_command_safe(robot)


def test_bad_goals_are_rejected_and_the_old_goal_kept(robot):
    """Defect 5: a 4x4 goal image and a goal state 9 m away were accepted."""
    goals = robot.rejections().get("goal/malformed", 0)
    robot.goal_image_pub.publish(_image(4, 4))
    robot.wait_rejected("goal/malformed", goals)
    for bad, reason in (
        ([9.0, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], "goal/unreachable"),
        ([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 5.0], "goal/malformed"),  # gripper 5
        ([0.5, 0.0, 0.3], "goal/malformed"),
    ):
        before = robot.rejections().get(reason, 0)
        robot.goal_state_pub.publish(Float64MultiArray(data=[float(v) for v in bad]))
        robot.wait_rejected(reason, before)
    robot.wait_mode("planning")  # on the old, valid goal
    assert "rejecting goal" in " ".join(log.msg for log in robot.logs)
    robot.goal_state_pub.publish(Float64MultiArray(data=GOAL_STATE.tolist()))
    assert_every_command_safe(robot)


def test_a_flood_is_counted_throttled_and_survived(robot):
    """200 Hz of bad images, spoofed poses and bad gripper states for 3 s: rejections are
    counted (never more than were sent), the log lines are throttled, planning resumes."""
    before = robot.rejections()
    with robot.lock:
        sent_before = dict(robot.sent)
        logs_before = len(robot.logs)
    bad_image = _image(2, 2)
    far = START + np.array([0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    deadline = time.monotonic() + 3.0
    flooded = 0
    while time.monotonic() < deadline:
        bad_image.header.stamp = robot.stamp()
        robot.image_pub.publish(bad_image)
        robot.publish_pose(far)
        flooded += 1
        time.sleep(0.005)
    robot.wait_mode("planning")
    after = robot.rejections()
    with robot.lock:
        sent = {k: robot.sent[k] - sent_before[k] for k in robot.sent}
        flood_logs = [log.msg for log in robot.logs[logs_before:] if "rejecting" in log.msg]
    new_images = after.get("image/malformed", 0) - before.get("image/malformed", 0)
    new_poses = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("pose/"))
    assert 0 < new_images <= flooded
    assert 0 < new_poses <= sent["pose"]
    # One line per reason per 5 s (plus the "N more" summaries): a handful, not hundreds.
    assert len(flood_logs) <= 12, flood_logs
    assert_every_command_safe(robot)
