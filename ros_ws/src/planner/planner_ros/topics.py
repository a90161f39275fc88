"""Default topic names and QoS profiles the nodes agree on. Names are relative (so a namespace or
``--ros-args -r old:=new`` remaps them) and every one is also a node parameter.

========================  ===========================  ====================================
parameter                 default                      type / direction (goal_planner)
========================  ===========================  ====================================
``image_topic``           ``camera/image``             sensor_msgs/Image in (rgb8 | bgr8)
``pose_topic``            ``ee_pose``                  geometry_msgs/PoseStamped in (TCP)
``gripper_state_topic``   ``gripper/joint_states``     sensor_msgs/JointState in (fingers)
``goal_image_topic``      ``goal/image``               sensor_msgs/Image in, latched
``goal_state_topic``      ``goal/state``               std_msgs/Float64MultiArray [7], latched
``target_topic``          ``target_pose``              geometry_msgs/PoseStamped out
``gripper_command_topic`` ``gripper/command``          std_msgs/Float64 out (closedness 0..1)
``diagnostics_topic``     ``/diagnostics``             diagnostic_msgs/DiagnosticArray out
========================  ===========================  ====================================
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

TOPICS: dict[str, str] = {
    "image_topic": "camera/image",
    "pose_topic": "ee_pose",
    "gripper_state_topic": "gripper/joint_states",
    "joint_states_topic": "joint_states",
    "goal_image_topic": "goal/image",
    "goal_state_topic": "goal/state",
    "target_topic": "target_pose",
    "gripper_command_topic": "gripper/command",
    "diagnostics_topic": "/diagnostics",
}

# Camera and robot state: best effort, so it matches both best-effort and reliable publishers.
SENSOR_QOS = qos_profile_sensor_data
# Commands and diagnostics: reliable, latest only.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Goals: latched (transient local) so a planner started later still receives the current goal.
# Publish a goal by hand with `ros2 topic pub --qos-durability transient_local ...`.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
