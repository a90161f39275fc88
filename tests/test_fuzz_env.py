"""Fuzzing ``FrankaTableEnv.step`` (MuJoCo, 48 px): malformed actions (NaN/inf, wrong length,
dtype or type, ragged lists) raise ``ActionError`` and change nothing, after which the env steps
normally; huge finite actions (any magnitude, numpy, torch or list) are clipped by the safety
filter so the commanded target stays inside the workspace box within one step's limits of the
current state (from anywhere in the box), and the arm stays in the box (from central starts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from robots.franka import euler_to_matrix, matrix_to_rotvec
from sim.env import ActionError

FUZZ = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# The arm itself is checked from starts in this central region only: near the far top corners of
# the workspace box (e.g. x=0.69, y=0.31, z=0.59) the hand-down pose is at the edge of the arm's
# reach, and after a full-size rotation step the MuJoCo IK servo has been seen to end the TCP
# up to 13 cm from an in-box target, outside the box. From the central region it stays inside
# (measured: < 0.3 mm outside over 360 random full-size steps); TRACKING_M is the slack allowed.
CENTRAL = ((0.35, -0.2, 0.05), (0.65, 0.2, 0.45))
TRACKING_M = 0.01


@pytest.fixture(scope="module")
def env():
    environment = sim.make("reach", image_size=48, seed=0)
    environment.reset()
    yield environment
    environment.close()


def snapshot(env) -> tuple[np.ndarray, np.ndarray, int]:
    return env.backend.ee_state().copy(), env.backend.qpos().copy(), env.steps


@st.composite
def malformed_actions(draw) -> tuple[object, str]:
    """(a malformed action, a fragment the ActionError message must contain)."""
    kind = draw(st.sampled_from(["nonfinite", "length", "dtype", "type"]))
    if kind == "nonfinite":
        action = np.zeros(7)
        for index in draw(st.sets(st.integers(0, 6), min_size=1)):
            action[index] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        wrapper = draw(st.sampled_from([np.asarray, list, torch.from_numpy]))
        return wrapper(action.astype(draw(st.sampled_from([np.float32, np.float64])))), "NaN"
    if kind == "length":
        shape = draw(
            st.one_of(
                st.tuples(st.integers(0, 20).filter(lambda n: n != 7)),
                st.tuples(st.integers(1, 3), st.just(7)),
                st.just(()),
            )
        )
        return np.zeros(shape), "shape"
    if kind == "dtype":
        action = draw(st.sampled_from([np.zeros(7, bool), np.zeros(7, complex)]))
        return (torch.from_numpy(action) if draw(st.booleans()) else action), "ints or floats"
    bad = draw(st.sampled_from([None, "forward", ["0"] * 7, [0.0, [1.0]], {"dx": 0.1}, object()]))
    return bad, "numbers"


@given(case=malformed_actions())
@FUZZ
def test_malformed_actions_raise_and_change_nothing(env, case):
    action, fragment = case
    state, qpos, steps = snapshot(env)
    with pytest.raises(ActionError, match=fragment):
        env.step(action)
    after_state, after_qpos, after_steps = snapshot(env)
    np.testing.assert_array_equal(after_state, state)
    np.testing.assert_array_equal(after_qpos, qpos)
    assert after_steps == steps
    observation, *_ = env.step(np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # still usable
    assert np.isfinite(observation["state"]).all() and env.steps == steps + 1


magnitudes = st.one_of(
    st.floats(-0.1, 0.1),
    st.floats(-1e308, 1e308),
    st.sampled_from([1e308, -1e308, np.finfo(np.float32).max, 1e6, -1e6, 5.0, -5.0]),
)


@given(
    actions=st.lists(st.lists(magnitudes, min_size=7, max_size=7), min_size=1, max_size=3),
    wrapper=st.sampled_from(["numpy32", "numpy64", "torch", "list"]),
    start=st.one_of(
        st.tuples(st.floats(0.25, 0.8), st.floats(-0.4, 0.4), st.floats(0.01, 0.6)),
        st.tuples(st.floats(0.35, 0.65), st.floats(-0.2, 0.2), st.floats(0.05, 0.45)),
    ),
)
@FUZZ
def test_huge_finite_actions_are_clipped_into_the_workspace(env, actions, wrapper, start):
    limits = env.safety.limits
    lower = np.array(limits.workspace.lower)
    upper = np.array(limits.workspace.upper)
    env.reset(seed=0)
    env.backend.place_ee(np.array([*start, np.pi, 0.0, 0.0, 0.0]))  # anywhere, walls included
    for values in actions:
        action = np.array(values)
        if wrapper == "numpy32":
            action = np.clip(action, -3e38, 3e38).astype(np.float32)
        action = {"torch": torch.from_numpy(action), "list": list(values)}.get(wrapper, action)
        state = env.backend.ee_state().astype(np.float64)
        target = env.safe_target(action)
        # The command: finite, inside the box (or, from a pose the IK left outside, no farther
        # out than the arm is), within one step of the current state.
        assert np.isfinite(target).all()
        outside = np.linalg.norm(target[:3] - np.clip(target[:3], lower, upper))
        assert outside <= np.linalg.norm(state[:3] - np.clip(state[:3], lower, upper)) + 1e-9
        assert np.linalg.norm(target[:3] - state[:3]) <= limits.step.translation + 1e-9
        relative = (
            euler_to_matrix(torch.from_numpy(target[3:6]))
            @ euler_to_matrix(torch.from_numpy(state[3:6])).T
        )
        assert float(matrix_to_rotvec(relative).norm()) <= limits.step.rotation + 1e-6
        assert 0.0 <= target[6] <= 1.0
        observation, *_ = env.step(action)
        assert np.isfinite(observation["state"]).all()
    # The arm, from a start where the hand-down pose is well within reach: inside the box.
    if np.all(np.array(start) >= CENTRAL[0]) and np.all(np.array(start) <= CENTRAL[1]):
        position = observation["state"][:3].astype(np.float64)
        assert np.all(position >= lower - TRACKING_M) and np.all(position <= upper + TRACKING_M)
