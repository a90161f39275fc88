"""The parameters of the ``goal_planner`` node: names, defaults, which may change at run time,
and their checks."""

from __future__ import annotations

from planner_ros.topics import TOPICS

PARAMETERS: dict[str, object] = {
    "config": "",  # planner preset: configs/planner/<config>.yaml; '' = fast (sim-small) | icem
    "checkpoint": "sim-small",  # world model path/name; "state"; "random:<preset>" (untrained)
    "verify": True,  # checkpoint sha256: true (a mismatch refuses) | strict (no record refuses)
    "device": "auto",
    "cpu_threads": 0,  # torch threads when planning on the CPU; 0 = torch's default
    "planner_overrides": [""],  # "key=value" planner config overrides ("" ignored)
    "robot_limits": "franka",  # configs/robot/<name>.yaml for the safety checks
    "rate_hz": 4.0,
    "watchdog_s": 1.0,  # inputs older than this (received or stamped) -> hold
    "clock_skew_s": 0.05,  # stamps up to this far ahead of the node's clock are accepted
    "resync_s": 0.0,  # arm > a step from the last command this long -> re-anchor; 0 = ~/enable
    "enabled": True,
    "fresh_inputs": True,  # plan on inputs stamped after the last command (waits <= watchdog_s)
    "goal_image": "",  # image file loaded at start and by ~/set_goal
    "frame_id": "base",  # the robot base frame: poses in another frame are rejected
    **{name: topic for name, topic in TOPICS.items() if name != "joint_states_topic"},
}
DYNAMIC_TYPES = ("verify",)  # true/false (bool) or "strict" (string)
RUNTIME_PARAMETERS = ("rate_hz", "watchdog_s", "clock_skew_s", "resync_s", "enabled", "goal_image")
POSITIVE_PARAMETERS = ("rate_hz", "watchdog_s")
NON_NEGATIVE_PARAMETERS = ("clock_skew_s", "resync_s")


def cpu_threads(requested: int) -> int | None:
    """Torch threads for planning on the CPU: ``requested`` if > 0, else None (torch's default,
    one per core). Set it lower when other busy processes share the cores.

    Raises:
        ValueError: ``requested`` < 0.
    """
    if requested < 0:
        raise ValueError(f"cpu_threads must be >= 0 (0 = torch's default), got {requested}")
    return requested or None


def start_problem(values: dict[str, object]) -> str:
    """Why the parameters the node starts with cannot be used ('' if they can)."""
    for name in (*POSITIVE_PARAMETERS, *NON_NEGATIVE_PARAMETERS):
        problem = _range_problem(name, values[name])
        if problem:
            return problem
    if int(values["cpu_threads"]) < 0:
        return f"cpu_threads must be >= 0 (0 = torch's default), got {values['cpu_threads']}"
    return ""


def _range_problem(name: str, value: object) -> str:
    if name in POSITIVE_PARAMETERS and not float(value) > 0:
        return f"{name} must be > 0, got {value}"
    if name in NON_NEGATIVE_PARAMETERS and not float(value) >= 0:
        return f"{name} must be >= 0, got {value}"
    return ""


def parameter_problem(name: str, value: object) -> str:
    """Why ``name`` may not be set to ``value`` at run time ('' if it may)."""
    problem = _range_problem(name, value)
    if problem:
        return problem
    if name not in RUNTIME_PARAMETERS and name in PARAMETERS:
        return f"{name} is fixed at start; restart the node"
    return ""
