"""ROS 2 side of jepa-mpc (ROS package ``planner``): the ``goal_planner`` and ``mujoco_franka``
nodes, message conversions, and an in-process bringup. Planning itself lives in the ``planner``
library; this module only moves data between ROS topics and it.
"""
