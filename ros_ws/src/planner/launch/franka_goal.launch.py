"""Goal-image MPC on a Franka: ``ros2 launch planner franka_goal.launch.py [arg:=value ...]``.

Arguments:
    use_sim     true (default): start ``mujoco_franka`` and plan against it.
                false: start only ``goal_planner`` on the real-arm topics of
                ``config/franka_real.yaml`` (franka_ros2 + a RealSense camera; remap as needed).
    task        sim task (reach | push | grasp | pick_place), default reach.
    goal_image  goal image file for the planner ('' = take the goal from the goal/image topic,
                which the sim publishes).
    checkpoint  world model path or bundled name ('state' = ground-truth-state model, sim only).
    planner     planner preset (configs/planner/<name>.yaml).
    device      auto | cpu | cuda.

checkpoint, planner and device default to '' = the value in the config files: sim-small with
the icem preset (config/goal_planner.yaml), overlaid by config/franka_real.yaml on the real arm.

The in-process equivalent without ``ros2 launch``: ``python -m planner_ros.bringup``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("use_sim", "true", "start the MuJoCo Franka (true) or plan against the real arm (false)"),
    ("task", "reach", "sim task: reach | push | grasp | pick_place"),
    ("goal_image", "", "goal image file ('' = goal/image topic)"),
    ("checkpoint", "", "world model path or name ('' = config files: sim-small); state = sim"),
    ("planner", "", "planner preset in configs/planner/ ('' = config files: icem)"),
    ("device", "", "auto | cpu | cuda ('' = config files: auto)"),
)
# goal_planner parameters set by launch arguments: parameter -> argument.
PLANNER_ARGUMENTS = {
    "config": "planner",
    "checkpoint": "checkpoint",
    "device": "device",
    "goal_image": "goal_image",
}


def _planner_params(context) -> dict[str, str]:
    """The goal_planner parameters the user gave as arguments (empty ones keep the files')."""
    given = {p: LaunchConfiguration(a).perform(context) for p, a in PLANNER_ARGUMENTS.items()}
    return {name: value for name, value in given.items() if value}


def _nodes(context) -> list[Node]:
    """The sim node (if ``use_sim``) and the goal planner, with config/*.yaml parameters."""
    use_sim = LaunchConfiguration("use_sim").perform(context).lower() in ("true", "1")
    config_dir = PathJoinSubstitution([FindPackageShare("planner"), "config"])
    planner_files = [PathJoinSubstitution([config_dir, "goal_planner.yaml"])]
    nodes = []
    if use_sim:
        nodes.append(
            Node(
                package="planner",
                executable="mujoco_franka",
                name="mujoco_franka",
                output="screen",
                parameters=[
                    PathJoinSubstitution([config_dir, "mujoco_franka.yaml"]),
                    {"task": LaunchConfiguration("task")},
                ],
            )
        )
    else:
        planner_files.append(PathJoinSubstitution([config_dir, "franka_real.yaml"]))
    nodes.append(
        Node(
            package="planner",
            executable="goal_planner",
            name="goal_planner",
            output="screen",
            parameters=[*planner_files, _planner_params(context)],
        )
    )
    return nodes


def generate_launch_description() -> LaunchDescription:
    """The launch arguments, then the nodes they select (see the module docstring)."""
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in ARGUMENTS
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
