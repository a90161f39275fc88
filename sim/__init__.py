"""Franka Panda table-top simulation: MuJoCo (primary) and PyBullet (secondary) backends behind
one Gymnasium environment, the reach/push/grasp/pick_place tasks and their scripted experts.

Importing ``sim`` registers the Gymnasium ids ``jepa_mpc/FrankaReach-v0``,
``jepa_mpc/FrankaPush-v0``, ``jepa_mpc/FrankaGrasp-v0`` and ``jepa_mpc/FrankaPickPlace-v0``.
"""

from __future__ import annotations

import os
from typing import Any

# Headless rendering by default; must be set before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402

from sim.backend import BACKENDS, Backend, UnknownBackendError  # noqa: E402

ENV_IDS: dict[str, str] = {
    "reach": "jepa_mpc/FrankaReach-v0",
    "push": "jepa_mpc/FrankaPush-v0",
    "grasp": "jepa_mpc/FrankaGrasp-v0",
    "pick_place": "jepa_mpc/FrankaPickPlace-v0",
}


def make(
    task: str,
    backend: str = "mujoco",
    image_size: int = 256,
    seed: int | None = None,
    **kwargs: Any,
):
    """Build a :class:`sim.env.FrankaTableEnv`.

    Args:
        task: one of ``reach``, ``push``, ``grasp``, ``pick_place``.
        backend: a name in ``sim.backend.BACKENDS`` (``mujoco``, ``pybullet``).
        image_size: side of the square camera image in pixels.
        seed: seed used by the first ``reset()`` that is not given one.
        **kwargs: passed to ``FrankaTableEnv`` (``limits``, ``task_overrides``, ...).

    Raises:
        UnknownBackendError: unknown backend name (lists the known ones).
        ValueError: unknown task name; ``sim.env.EnvArgumentError`` for a task that is not a
            name, an image size that is not an int in [16, 4096], a seed that is not an int.
    """
    from sim.env import FrankaTableEnv

    if backend not in BACKENDS:
        raise UnknownBackendError(
            f"unknown simulator backend {backend!r}; known backends: {', '.join(sorted(BACKENDS))}"
        )
    return FrankaTableEnv(task=task, backend=backend, image_size=image_size, seed=seed, **kwargs)


def _register() -> None:
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sim.env:FrankaTableEnv", kwargs={"task": task})


_register()

__all__ = ["BACKENDS", "ENV_IDS", "Backend", "UnknownBackendError", "make"]
