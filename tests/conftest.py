"""Test-wide set-up: headless MuJoCo rendering must be chosen before anything imports mujoco."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _keep_torch_threads():
    """A goal_planner node sets torch's (process-wide) thread count; give it back after each
    module so the tests after it run as they would alone."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
