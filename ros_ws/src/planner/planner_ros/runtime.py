"""Plumbing shared by the nodes, the in-process bringup, the tests and the measuring scripts:
finding the package's config files, reading ROS parameter YAML files, and spinning an executor
in a background thread. (Console entry points and signals: ``planner_ros.process``.)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.parameter import Parameter

PACKAGE = "planner"


class ParamsFileError(ValueError):
    """A parameter YAML file that is missing or not in the ROS ``ros__parameters`` layout."""


def share_dir() -> Path:
    """The package's share directory: from the ament index (colcon install), else the source
    folder (editable pip install), else ``<sys.prefix>/share/planner`` (plain pip install)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)))
    except (ImportError, LookupError, ValueError, OSError):  # no ament index on this machine
        pass
    candidates += [Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / PACKAGE]
    return next((c for c in candidates if (c / "config").is_dir()), candidates[-1])


def config_file(name: str) -> Path:
    """Path of ``config/<name>.yaml`` of this package.

    Raises:
        ParamsFileError: the file does not exist.
    """
    path = share_dir() / "config" / f"{name}.yaml"
    if not path.is_file():
        raise ParamsFileError(f"parameter file {path} not found")
    return path


def load_params(path: str | os.PathLike, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` (merged over those of ``/**``) in a YAML file.

    Raises:
        ParamsFileError: missing file, or a file not in the ROS parameter layout.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsFileError(f"parameter file {path} not found")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ParamsFileError(f"{path}: expected a mapping of node names to ros__parameters")
    params: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = content.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ParamsFileError(f"{path}: section {key!r} has no 'ros__parameters' mapping")
        params.update(section["ros__parameters"])
    return params


def as_parameters(values: dict[str, Any]) -> list[Parameter]:
    """``{name: value}`` -> rclpy ``Parameter`` list (type inferred from the value)."""
    return [Parameter(name, value=value) for name, value in values.items()]


def init_context(domain_id: int | None = None) -> Context:
    """A fresh, initialised rclpy context (its own DDS participant set, optional domain id)."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    return context


class BackgroundSpinner:
    """Spin ``executor`` in a daemon thread from :meth:`start` until :meth:`stop`; a context
    manager (entering starts it)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._thread = threading.Thread(target=executor.spin, name="ros-spin", daemon=True)

    def __enter__(self) -> BackgroundSpinner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> BackgroundSpinner:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the spin thread is running (a callback that raises ends it)."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Shut the executor down and join the spin thread (each waits up to ``timeout_s``)."""
        for node in self.executor.get_nodes():  # no new callbacks from here on
            self.executor.remove_node(node)
        self.executor.shutdown(timeout_sec=timeout_s)
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)


def spin_nodes(context: Context, nodes: list) -> BackgroundSpinner:
    """Add ``nodes`` to a new SingleThreadedExecutor and return an (unstarted) spinner for it.

    One thread: the callbacks only store inputs or answer services (planning and simulation run
    in the nodes' own threads), and rclpy's executors are Python, so every executor thread
    competes for the GIL with those threads. Measured (`latency_bench --checkpoint state
    --image-size 128`, 2 cores): a 4-thread MultiThreadedExecutor reached 0.6-1.9 commands/s
    of the 4 asked for, with plans stalled up to 5.8 s; this one 4.0/s, image->command 40-48 ms.
    """
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    return BackgroundSpinner(executor)


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
