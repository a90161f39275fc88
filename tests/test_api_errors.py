"""The Python API answers bad arguments with one clear line (a ``ValueError`` subclass naming
the argument), never a raw torch, numpy or attribute error: a device this machine does not
have, ``sim.make`` with a task that is not a name, an image size that is not an int in range, a
seed that is not an int; and it takes a gripper of 5 or an angle of 100 rad in a defined way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sim
from planner import PlanInputError, Planner
from robots.franka import SafetyFilter, euler_to_matrix, matrix_to_rotvec
from sim.env import EnvArgumentError
from world_model.devices import DeviceError, resolve_device
from world_model.state_model import StateWorldModel

SMALL = ["actor.samples=16", "actor.elites=4", "actor.iterations=2"]
IMAGE = np.zeros((16, 16, 3), np.uint8)
STATE = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_clear_line():
    with pytest.raises(DeviceError) as error:
        Planner.from_config("icem", StateWorldModel(), device="cuda")
    assert "use device='cpu'" in one_line(error)
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda:1")
    import world_model

    with pytest.raises(DeviceError, match="use device='cpu'"):
        world_model.load("sim-small", device="cuda")
    with pytest.raises(DeviceError, match="use device='cpu'"):
        world_model.build("tiny", device="cuda")


def test_bad_device_names_are_refused_by_name():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    for bad, fragment in (("gpu", "unknown device 'gpu'"), (3, "must be a name")):
        with pytest.raises(DeviceError) as error:
            resolve_device(bad)
        assert fragment in one_line(error)
    assert issubclass(DeviceError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"task": None}, "task must be a task name"),
        ({"task": 3}, "task must be a task name"),
        ({"task": "reach", "image_size": "128"}, "image_size must be an int"),
        ({"task": "reach", "image_size": 100000}, "[16, 4096], got 100000"),
        ({"task": "reach", "image_size": 8}, "image_size must be an int"),
        ({"task": "reach", "image_size": 32.0}, "image_size must be an int"),
        ({"task": "reach", "image_size": 32, "seed": "3"}, "seed must be a non-negative int"),
        ({"task": "reach", "image_size": 32, "seed": 1.5}, "seed must be a non-negative int"),
        ({"task": "reach", "image_size": 32, "seed": True}, "seed must be a non-negative int"),
        ({"task": "reach", "image_size": 32, "seed": -1}, "seed must be a non-negative int"),
    ],
)
def test_sim_make_refuses_bad_arguments_in_one_line(kwargs, fragment):
    with pytest.raises(EnvArgumentError) as error:
        sim.make(**kwargs)
    assert fragment in one_line(error)


def test_sim_make_takes_numpy_ints_and_refuses_a_bad_reset_seed():
    env = sim.make("reach", image_size=np.int64(16), seed=np.int32(2))
    try:
        assert env.reset()[0]["image"].shape == (16, 16, 3)
        with pytest.raises(EnvArgumentError, match="seed must be"):
            env.reset(seed="x")
    finally:
        env.close()


@pytest.fixture(scope="module")
def planner() -> Planner:
    return Planner.from_config("icem", StateWorldModel(), device="cpu", overrides=SMALL)


@pytest.mark.parametrize("where", ["obs", "goal"])
def test_a_gripper_of_5_is_refused_in_one_line(planner, where):
    bad = STATE.copy()
    bad[6] = 5.0
    obs = {"image": IMAGE, "state": bad if where == "obs" else STATE}
    goal = {"image": IMAGE, "state": bad if where == "goal" else STATE}
    with pytest.raises(PlanInputError) as error:
        planner.plan(obs, goal)
    assert f"{where}['state'] gripper closedness 5 is outside [0, 1]" in one_line(error)


def test_an_angle_of_100_rad_is_the_same_rotation_wrapped(planner):
    turned = STATE.copy()
    turned[5] = 100.0  # yaw
    wrapped = STATE.copy()
    wrapped[5] = np.angle(np.exp(100j))
    goal = {"image": IMAGE, "state": STATE + np.array([0.05, 0, 0, 0, 0, 0, 0], np.float32)}
    planner.reset()
    far = planner.plan({"image": IMAGE, "state": turned}, goal)
    planner.reset()
    near = planner.plan({"image": IMAGE, "state": wrapped}, goal)
    np.testing.assert_allclose(far.action, near.action, atol=1e-6)
    caller = turned.copy()
    planner.plan({"image": IMAGE, "state": turned}, goal)
    np.testing.assert_array_equal(turned, caller)  # the caller's array is not changed
    turned[5] = 1e6  # no sensor reads this: refused, not wrapped
    with pytest.raises(PlanInputError) as error:
        planner.plan({"image": IMAGE, "state": turned}, goal)
    assert "radians" in one_line(error)


def test_a_huge_rotation_request_keeps_its_sign():
    """+100 rad of roll is +0.25 rad (one step), not 100 rad modulo a turn (-0.53 rad)."""
    state = torch.tensor([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    for request, sign in ((100.0, 1.0), (-100.0, -1.0), (4.0, 1.0)):
        action = SafetyFilter()(state, torch.tensor([0, 0, 0, request, 0, 0, 0.0]).double())
        rotvec = matrix_to_rotvec(euler_to_matrix(action[3:6]))
        np.testing.assert_allclose(rotvec.numpy(), [sign * 0.25, 0.0, 0.0], atol=1e-9)


def test_the_env_clips_a_gripper_of_5_and_an_angle_of_100_rad():
    env = sim.make("reach", image_size=16, seed=0)
    try:
        env.reset()
        state = env.backend.ee_state()
        target = env.safe_target(np.array([0, 0, 0, 100.0, 0, 0, 5.0]))
        assert target[6] == pytest.approx(1.0)  # closed: one full gripper step
        relative = euler_to_matrix(torch.from_numpy(target[3:6])) @ euler_to_matrix(
            torch.from_numpy(state[3:6].astype(np.float64))
        ).transpose(-1, -2)
        np.testing.assert_allclose(matrix_to_rotvec(relative).numpy(), [0.25, 0, 0], atol=1e-6)
    finally:
        env.close()
