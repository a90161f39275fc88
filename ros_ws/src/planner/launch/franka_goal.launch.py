"""Goal-image MPC on a Franka: ``ros2 launch planner franka_goal.launch.py [arg:=value ...]``.

Arguments:
    use_sim     true (default): start ``mujoco_franka`` and plan against it.
                false: start only ``goal_planner`` on the real-arm topics of
                ``config/franka_real.yaml`` (franka_ros2 + a RealSense camera; remap as needed).
    task        sim task (reach | push | grasp | pick_place), default reach.
    goal_image  goal image file for the planner ('' = take the goal from the goal/image topic,
                which the sim publishes).
    checkpoint  world model path or name ('state' = ground-truth-state model, sim only).
    planner     planner preset (configs/planner/<name>.yaml).
    device      auto | cpu | cuda.

The in-process equivalent without ``ros2 launch``: ``python -m planner_ros.bringup``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("use_sim", "true", "start the MuJoCo Franka (true) or plan against the real arm (false)"),
    ("task", "reach", "sim task: reach | push | grasp | pick_place"),
    ("goal_image", "", "goal image file ('' = goal/image topic)"),
    ("checkpoint", "state", "world model path or name; state = ground-truth states (sim)"),
    ("planner", "cem_paper", "planner preset in configs/planner/"),
    ("device", "auto", "auto | cpu | cuda"),
)


def generate_launch_description() -> LaunchDescription:
    """The sim node (if ``use_sim``) and the goal planner, with config/*.yaml parameters."""
    use_sim = LaunchConfiguration("use_sim")
    config_dir = PathJoinSubstitution([FindPackageShare("planner"), "config"])
    planner_params = {
        "config": LaunchConfiguration("planner"),
        "checkpoint": LaunchConfiguration("checkpoint"),
        "device": LaunchConfiguration("device"),
        "goal_image": LaunchConfiguration("goal_image"),
    }
    sim = Node(
        package="planner",
        executable="mujoco_franka",
        name="mujoco_franka",
        output="screen",
        parameters=[
            PathJoinSubstitution([config_dir, "mujoco_franka.yaml"]),
            {"task": LaunchConfiguration("task")},
        ],
        condition=IfCondition(use_sim),
    )
    planner_sim = Node(
        package="planner",
        executable="goal_planner",
        name="goal_planner",
        output="screen",
        parameters=[PathJoinSubstitution([config_dir, "goal_planner.yaml"]), planner_params],
        condition=IfCondition(use_sim),
    )
    planner_real = Node(
        package="planner",
        executable="goal_planner",
        name="goal_planner",
        output="screen",
        parameters=[
            PathJoinSubstitution([config_dir, "goal_planner.yaml"]),
            PathJoinSubstitution([config_dir, "franka_real.yaml"]),
            planner_params,
        ],
        condition=UnlessCondition(use_sim),
    )
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription([*arguments, sim, planner_sim, planner_real])
