"""Test-wide set-up: headless MuJoCo rendering must be chosen before anything imports mujoco, and
the ROS package's Python module (``planner_ros``) is imported from the source tree when it is not
colcon-installed (the ROS tests skip themselves when rclpy is missing)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

ROS_PACKAGE = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "planner"
if str(ROS_PACKAGE) not in sys.path:
    sys.path.insert(0, str(ROS_PACKAGE))
