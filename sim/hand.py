"""The Franka Hand as both simulator backends model it: where the TCP sits relative to the
fingertips, and the grasp rule that turns a commanded closedness into finger behaviour.

TCP. The 7-D state's xyz is the centre of the fingertip pads: on the hand's axis,
``TCP_ABOVE_FINGERTIPS`` above the fingertip ends (Franka's own flange-to-TCP 0.1034 m on the
standard fingers). Each backend derives its flange offset from its own finger length, so the
TCP is the same physical point in both, and the workspace floor (z = 0.01) keeps the fingertips
just off the table.

Grasp rule (like ``franka::Gripper::grasp`` with a force and an outer tolerance). The commanded
closedness is a finger-width set-point, tracked by position control. When both fingers touch
the cube (gap <= ``TOUCH_DISTANCE``) and the command is no wider than the measured width plus
``GRASP_TOLERANCE``, the hand *holds*: the fingers squeeze with ``GRASP_FORCE`` each, whatever
the command, until a command asks for an opening wider than that tolerance. The reported
closedness is always the measured one (``1 - width / 0.08``), so with nothing between the fingers
it equals the command after a step, and holding the 5 cm cube it reads about 0.375.
"""

from __future__ import annotations

from sim.backend import MAX_FINGER_WIDTH

TCP_ABOVE_FINGERTIPS = 0.0089  # metres along the hand axis, TCP above the fingertip ends
GRASP_FORCE = 20.0  # N per finger while holding
GRASP_TOLERANCE = 0.004  # m: a command this much wider than the held object keeps holding
TOUCH_DISTANCE = 0.001  # m: a finger this close to the cube counts as touching it


def width_from_closedness(closedness: float) -> float:
    """Finger width (m, 0 .. 0.08) of a closedness (clipped to [0, 1])."""
    return (1.0 - min(max(float(closedness), 0.0), 1.0)) * MAX_FINGER_WIDTH


def holds(command_width: float, measured_width: float, both_fingers_touch: bool) -> bool:
    """Whether the hand squeezes the object between its fingers (see the module docstring).

    Args:
        command_width: commanded finger width (m).
        measured_width: current finger width (m).
        both_fingers_touch: both fingers are within ``TOUCH_DISTANCE`` of the cube.
    """
    return both_fingers_touch and command_width <= measured_width + GRASP_TOLERANCE
