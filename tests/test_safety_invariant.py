"""The safety invariant at the last point before actuation, property-tested: whatever the world
model and planner produce (NaN, inf, huge values), the command that leaves the library
(``SafetyFilter.target``, ``Planner.plan(...).action``, ``FrankaTableEnv.safe_target``) or the
ROS node (the ``PoseStamped`` it publishes) is finite, no further outside the workspace box than
the arm already is, and within one step's limits of the current state; a NaN action is hold.
The ROS node is stricter: inside the box, and within one step of its last command too.

The checks use their own numpy rotation code (not ``robots.franka``'s) as the oracle. The ROS
e-stop latch (``~/stop`` holds until ``~/enable``) is tested in ``test_ros_goal_planner.py``."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from planner import Planner
from planner.planner import NonFiniteEnergyWarning
from robots.franka import FrankaLimits, SafetyFilter, integrate_pose
from world_model.state_model import StateWorldModel

LIMITS = FrankaLimits()
LOWER, UPPER = np.array(LIMITS.workspace.lower), np.array(LIMITS.workspace.upper)
TOLERANCE = 1e-6
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
IMAGE = np.zeros((16, 16, 3), np.uint8)


# -- the oracle ---------------------------------------------------------------------------------


def rotation(euler: np.ndarray) -> np.ndarray:
    """Extrinsic xyz Euler (roll, pitch, yaw) -> matrix: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    roll, pitch, yaw = euler
    rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
    ry = np.array(
        [[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]]
    )
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    return rz @ ry @ rx


def outside_box(position: np.ndarray) -> float:
    return float(np.linalg.norm(position - np.clip(position, LOWER, UPPER)))


def assert_safe_command(state: np.ndarray, target: np.ndarray, atol: float = TOLERANCE) -> None:
    """The invariant for one command ``target`` [7] sent from ``state`` [7]."""
    state, target = np.asarray(state, np.float64), np.asarray(target, np.float64)
    assert target.shape == (7,) and np.isfinite(target).all(), target
    assert outside_box(target[:3]) <= outside_box(state[:3]) + atol, (state, target)
    if outside_box(state[:3]) == 0.0:
        assert np.all(target[:3] >= LOWER - atol) and np.all(target[:3] <= UPPER + atol)
    step = LIMITS.step
    assert np.linalg.norm(target[:3] - state[:3]) <= step.translation + atol
    relative = rotation(target[3:6]) @ rotation(state[3:6]).T
    angle = np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))
    assert angle <= step.rotation + 1e-5, angle
    assert -atol <= target[6] <= 1.0 + atol
    assert abs(target[6] - np.clip(state[6], 0.0, 1.0)) <= step.gripper + atol


def assert_hold(state: np.ndarray, target: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(target[:3], state[:3], atol=atol)
    np.testing.assert_allclose(rotation(target[3:6]), rotation(state[3:6]), atol=atol)
    assert target[6] == pytest.approx(np.clip(state[6], 0.0, 1.0), abs=atol)


# -- the safety filter --------------------------------------------------------------------------

wild = st.one_of(
    st.floats(-0.3, 0.3),
    st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 3e38, -3e38, 1e6, -1e6]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def states_within(margin: float) -> st.SearchStrategy:
    """7-D states with the position in the box grown by ``margin`` metres, any angles."""
    return st.tuples(
        *[st.floats(low - margin, high + margin) for low, high in zip(LOWER, UPPER, strict=True)],
        *[st.floats(-10.0, 10.0)] * 3,
        st.floats(0.0, 1.0),
    )


states = states_within(0.1)  # some outside the box: the filter must still not push further out
box_states = states_within(0.0)


@given(
    batch=st.lists(st.tuples(states, st.tuples(*[wild] * 7)), min_size=1, max_size=6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
@settings(max_examples=60, deadline=None)
def test_the_filter_commands_are_safe_for_any_action(batch, dtype):
    state = torch.tensor([s for s, _ in batch], dtype=dtype)  # [B, 7]
    action = torch.tensor([a for _, a in batch], dtype=torch.float64)  # [B, 7]
    target = SafetyFilter(LIMITS).target(state, action).double().numpy()
    for row, (_, a) in enumerate(batch):
        assert_safe_command(state[row].double().numpy(), target[row], atol=1e-5)
        if not np.isfinite(a).any():  # a NaN (or inf) action is hold
            assert_hold(state[row].double().numpy(), target[row])


def test_the_filter_refuses_a_non_finite_state():
    with pytest.raises(ValueError, match="NaN or inf"):
        SafetyFilter(LIMITS).target(torch.full((7,), np.nan), torch.zeros(7))


# -- the planner, on a world model that predicts garbage -----------------------------------------


class CorruptedPredictions:
    """A real world model whose predictions are overwritten with NaN, inf or huge values: all
    of them (``everything``) or those of the sequences whose first action moves in +x."""

    def __init__(self, model: StateWorldModel, value: float, everything: bool) -> None:
        self.model, self.value, self.everything = model, value, everything
        self.num_patches, self.latent_dim, self.device = (
            model.num_patches,
            model.latent_dim,
            model.device,
        )

    def corrupted(self, actions: torch.Tensor) -> torch.Tensor:
        """Which sequences [S] of ``actions`` [S, H, 7] get corrupted predictions."""
        return (
            torch.ones_like(actions[:, 0, 0], dtype=torch.bool)
            if self.everything
            else (actions[:, 0, 0] > 0)
        )

    def encode(self, images, states=None) -> torch.Tensor:
        return self.model.encode(images, states)

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        predicted = self.model.rollout(z0, s0, actions)
        return torch.where(self.corrupted(actions)[:, None, None, None], self.value, predicted)


@pytest.fixture(scope="module")
def state_model() -> StateWorldModel:
    return StateWorldModel(num_patches=4, latent_dim=8, seed=0)


WIDE_BOUNDS = [  # the actors may ask for far more than one step
    "bounds.translation_max=3.0",
    "bounds.rotation_max=3.0",
    "bounds.gripper_max=5.0",
    "actor.init_std_translation=1.0",
    "actor.init_std_rotation=1.0",
]
SMALL = ["actor.samples=16", "actor.elites=4", "actor.iterations=2"]
SMALL += ["actor.restarts=3", "actor.steps=3"]


@given(
    preset=st.sampled_from(["cem_release", "icem", "gd", "cem+gd", "mppi"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30]),
    everything=st.booleans(),
    wide=st.booleans(),
    state=box_states,
    goal_offset=st.tuples(*[st.floats(-0.5, 0.5)] * 3),
)
@PROPERTY
def test_plans_are_safe_whatever_the_model_predicts(
    state_model, preset, value, everything, wide, state, goal_offset
):
    model = CorruptedPredictions(state_model, value, everything)
    overrides = SMALL + (WIDE_BOUNDS if wide else [])
    planner = Planner.from_config(preset, model, device="cpu", overrides=overrides)
    state = np.array(state, np.float32)
    goal_state = state + np.array([*goal_offset, 0, 0, 0, 0], np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = planner.plan({"image": IMAGE, "state": state}, {"image": IMAGE, "state": goal_state})
    target = integrate_pose(
        torch.from_numpy(state).double(), torch.from_numpy(plan.action).double()
    )
    assert_safe_command(state, target.numpy(), atol=1e-5)
    held = [w for w in caught if issubclass(w.category, NonFiniteEnergyWarning)]
    event("held" if not np.isfinite(plan.energy) else "planned")
    if not np.isfinite(plan.energy):  # nothing could be ranked: hold, and say so
        assert_hold(state, target.numpy())
        assert len(held) == 1
    else:
        assert not held
    if not np.isfinite(value) and np.isfinite(plan.energy):  # never execute an unscored plan
        assert not model.corrupted(torch.from_numpy(plan.actions)[None])[0]


def test_one_nan_prediction_does_not_poison_the_next_plans(state_model):
    """MPPI's warm start after a NaN plan would be NaN forever; the planner drops it."""
    model = CorruptedPredictions(state_model, np.nan, everything=True)
    planner = Planner.from_config("mppi", model, device="cpu", overrides=SMALL)
    start = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
    obs = {"image": IMAGE, "state": start}
    goal = {"image": IMAGE, "state": start + np.array([0.05, 0, 0, 0, 0, 0, 0], np.float32)}
    with pytest.warns(NonFiniteEnergyWarning, match="holding the pose"):
        assert not np.any(planner.plan(obs, goal).action[:6])
    model.value = 0.0  # the model recovers (all-zero latents: finite energies)
    recovered = planner.plan(obs, goal)
    assert np.isfinite(recovered.actions).all() and np.isfinite(recovered.energy)
    assert recovered.action[0] > 0.01  # toward the goal again


# -- the sim env --------------------------------------------------------------------------------


def test_planner_to_env_commands_stay_safe_on_a_broken_model(state_model):
    """The chain sim/bench use: ``env.step(plan.action)`` through the env's own filter."""
    import sim

    env = sim.make("reach", image_size=32, seed=0)
    try:
        obs, _ = env.reset()
        model = CorruptedPredictions(state_model, np.nan, everything=False)
        planner = Planner.from_config(
            "cem_release", model, device="cpu", overrides=SMALL + WIDE_BOUNDS
        )
        goal = env.goal()
        for _ in range(3):
            plan = planner.plan(obs, goal)
            state = env.backend.ee_state()
            assert_safe_command(state, env.safe_target(plan.action))
            obs, *_ = env.step(plan.action)
    finally:
        env.close()


# -- the ROS node: the guard right before publish ------------------------------------------------


@pytest.fixture(scope="module")
def ros_node():
    """A live goal_planner node and a listener on its command topics (real rclpy, loopback)."""
    pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from planner_ros.goal_planner import GoalPlannerNode
    from planner_ros.runtime import as_parameters, init_context, spin_nodes
    from planner_ros.topics import COMMAND_QOS
    from rcl_interfaces.msg import Log
    from std_msgs.msg import Float64

    domain = 160 + os.getpid() % 60
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(domain))
        patch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = init_context(domain)
        node = GoalPlannerNode(
            context=context,
            parameter_overrides=as_parameters(
                {"checkpoint": "state", "device": "cpu", "planner_overrides": SMALL}
            ),
        )
        listener = rclpy.create_node("command_listener", context=context)
        received = {"poses": [], "grippers": [], "logs": [], "lock": threading.Lock()}

        def keep(kind):
            def callback(msg) -> None:
                with received["lock"]:
                    received[kind].append(msg)

            return callback

        listener.create_subscription(PoseStamped, "target_pose", keep("poses"), COMMAND_QOS)
        listener.create_subscription(Float64, "gripper/command", keep("grippers"), COMMAND_QOS)
        listener.create_subscription(Log, "/rosout", keep("logs"), 100)
        try:
            with spin_nodes(context, [node, listener]):
                yield node, received
        finally:
            node.destroy_node()
            listener.destroy_node()
            rclpy.shutdown(context=context)


def published_command(received: dict, count: int, timeout_s: float = 10.0) -> np.ndarray:
    """The 7-D state of the ``count``-th command (pose + gripper) the listener received."""
    from planner_ros.conversions import pose_to_state
    from planner_ros.runtime import wait_for

    def arrived() -> bool:
        with received["lock"]:
            return len(received["poses"]) >= count and len(received["grippers"]) >= count

    assert wait_for(arrived, timeout_s), "no command published"
    with received["lock"]:
        pose, gripper = received["poses"][count - 1], received["grippers"][count - 1]
    return pose_to_state(pose, gripper.data)


def snapshot(state: np.ndarray):
    from planner_ros.inputs import Snapshot

    now = time.monotonic()
    return Snapshot(
        image=IMAGE,
        image_received=now,
        state=state,
        state_received=now,
        frame_id="base",
        goal_image=IMAGE,
        goal_state=state + np.array([0.05, 0, 0, 0, 0, 0, 0]),
    )


def within_step_of(reference: np.ndarray, command: np.ndarray, atol: float = 1e-5) -> None:
    """``command`` [7] is within one step's limits of ``reference`` [7] (the oracle's math)."""
    step = LIMITS.step
    assert np.linalg.norm(command[:3] - reference[:3]) <= step.translation + atol
    relative = rotation(command[3:6]) @ rotation(reference[3:6]).T
    angle = np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))
    assert angle <= step.rotation + 1e-5, angle
    assert abs(command[6] - reference[6]) <= step.gripper + atol


@given(
    state=states,  # some outside the box
    target=st.one_of(
        st.tuples(*[wild] * 7),
        st.tuples(*[st.floats(-0.1, 0.1)] * 7),  # near the state: some pass, some do not
    ),
    near=st.booleans(),
    anchor_offset=st.one_of(st.none(), st.tuples(*[st.floats(-0.08, 0.08)] * 3)),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_node_publishes_only_safe_commands(ros_node, state, target, near, anchor_offset):
    """Whatever target reaches the node's last check, what it publishes (the target, a hold or
    nothing) is finite, inside the box, and within one step of the measured pose and of the
    last command (the anchor). (The refusal's log line is throttled: test_ros_goal_planner.)"""
    node, received = ros_node
    state = np.array(state)
    target = np.array(target) + (state if near else 0.0)
    with node._gate:
        node._guard.release()
        if anchor_offset is not None:  # a previous command near the arm, inside the box
            anchor = state.copy()
            anchor[:3] = np.clip(state[:3] + anchor_offset, LOWER, UPPER)
            node._guard.commit(anchor, hold=False)
        previous = node._guard.anchor
        with received["lock"]:
            count = len(received["poses"]) + 1
        planned = node._command_plan(target, snapshot(state))
        published = node._guard.anchor
        no_hold = node._guard.hold_target(state)[0] is None
    event("planned" if planned else ("held" if published is not previous else "nothing"))
    if published is previous:  # nothing was sent: the target was refused and no hold is safe
        assert not planned and no_hold
        return
    command = published_command(received, count)
    np.testing.assert_allclose(command[[0, 1, 2, 6]], published[[0, 1, 2, 6]], atol=1e-12)
    assert np.isfinite(command).all()
    assert outside_box(command[:3]) <= TOLERANCE
    within_step_of(state, command)
    if previous is not None:
        within_step_of(previous, command)
    if planned:
        np.testing.assert_allclose(command[:3], target[:3], atol=1e-12)


def test_a_broken_model_makes_the_node_hold(ros_node, state_model):
    """A full planning cycle on a model that predicts NaN: the node publishes the measured
    pose, never NaN. (The planner is swapped for one on a fault-injecting model.)"""
    node, received = ros_node
    state = np.array([0.5, 0.05, 0.3, np.pi, 0.0, 0.0, 0.4])
    with node._gate:
        node._guard.release()  # no previous command: the hold is the measured pose
    node._planner = Planner.from_config(
        "mppi", CorruptedPredictions(state_model, np.nan, True), device="cpu", overrides=SMALL
    )
    with received["lock"]:
        count = len(received["poses"]) + 1
    node._mode = "planning"
    with pytest.warns(NonFiniteEnergyWarning):
        node._cycle(snapshot(state))
    command = published_command(received, count)
    assert_hold(state, command)
