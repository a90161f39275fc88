"""Console entry points of the nodes and of ``bringup``: start the nodes, spin them on one
executor thread, and stop cleanly. SIGINT and SIGTERM (Ctrl-C, ``ros2 launch``'s shutdown, a
supervisor) end the process with exit code 0 within ``SHUTDOWN_S``, mid-plan included: each node's
``begin_shutdown`` runs first (the planner's final command is a hold), then the executor, the
nodes and the context are shut down. A node that cannot start (a refused checkpoint, a bad
parameter) is one line on stderr and exit code 2, not a traceback.

A signal that arrives while Python is still importing the node's modules (torch: the first
seconds) gets Python's default handling.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import rclpy
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from planner_ros.runtime import BackgroundSpinner, spin_nodes

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHUTDOWN_S = 2.0  # promised upper bound from the signal to the process's exit
START_ERRORS = (ValueError, FileNotFoundError, ParameterException)
NodeFactory = Callable[[Context], Node]


class StopRequest:
    """While entered: SIGINT/SIGTERM set :attr:`event` (and record :attr:`signal`) instead of
    raising ``KeyboardInterrupt`` or killing the process; the previous handlers come back on
    exit. Enter it from the main thread."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal = self.signal or number
        self.event.set()


def run_nodes(
    factories: list[NodeFactory],
    program: str,
    argv: list[str] | None = None,
    duration_s: float = 0.0,
) -> int:
    """Start the nodes, spin them until a stop signal (or ``duration_s`` > 0), shut down.

    Args:
        factories: one callable per node, given the rclpy context.
        program: the name used in the one-line start error.
        argv: the process arguments (ROS arguments after ``--ros-args`` are applied).
        duration_s: seconds to run; 0 = until SIGINT/SIGTERM.

    Returns:
        0 after a clean stop; 2 when a node could not start; 1 if the executor thread died.
    """
    with StopRequest() as stop:
        context = Context()
        args = [program, *(sys.argv[1:] if argv is None else argv)]
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
        nodes: list[Node] = []
        try:
            for factory in factories:
                if stop.event.is_set():
                    break
                nodes.append(factory(context))
        except START_ERRORS as error:
            print(f"{program}: cannot start: {error}", file=sys.stderr, flush=True)
            shut_down(nodes, None, context)
            return 2
        spinner = spin_nodes(context, nodes)
        spinner.start()
        deadline = time.monotonic() + duration_s if duration_s > 0 else float("inf")
        code = 0
        while not stop.event.wait(0.05) and time.monotonic() < deadline:
            if not spinner.alive:
                print(f"{program}: the executor thread stopped; exiting", file=sys.stderr)
                code = 1
                break
        shut_down(nodes, spinner, context)
    return code


def shut_down(nodes: list[Node], spinner: BackgroundSpinner | None, context: Context) -> None:
    """Each node's ``begin_shutdown`` (if it has one), then the executor, the nodes and the
    context, each step bounded so that the whole takes well under ``SHUTDOWN_S``."""
    for node in nodes:
        begin = getattr(node, "begin_shutdown", None)
        if begin is not None:
            begin()
    if spinner is not None:
        spinner.stop(timeout_s=0.5)
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown(context=context)


def run_node(node_class: type[Node], program: str, argv: list[str] | None = None) -> NoReturn:
    """Console-script body of one node: :func:`run_nodes`, then :func:`exit_code`."""
    return exit_code(run_nodes([lambda context: node_class(context=context)], program, argv))


def exit_code(code: int) -> NoReturn:
    """End the process with ``code`` once everything is shut down: flush the output, then
    ``os._exit``. The interpreter's own teardown is skipped on purpose: it took 1-2 s more
    after torch and MuJoCo were imported (2 cores), and under a thread still inside a torch
    plan or a simulator step it can abort (exit -6) or hang."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
