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
    verify      checkpoint sha256 check: true (a mismatch refuses, no record warns) | strict (no
                record refuses too) | false.
    seed        sim episode seed (an int >= 0; the sim's ~/reset continues the seeded sequence).
    image_size  sim camera image side in pixels (sim-small was trained on 128).
    cameras     sim views side by side in each image: exterior | exterior,wrist ('' = the views
                the checkpoint's world model takes).

Every argument but use_sim and task defaults to '' = the value in the config files: sim-small
with the fast preset (icem for other checkpoints), verify true (config/goal_planner.yaml),
overlaid by config/franka_real.yaml on the real arm (verify strict); an unseeded 128 px sim
(config/mujoco_franka.yaml).

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
    ("planner", "", "planner preset in configs/planner/ ('' = fast for sim-small, else icem)"),
    ("device", "", "auto | cpu | cuda ('' = config files: auto)"),
    ("verify", "", "checkpoint sha256: true | strict | false ('' = config: true; real arm strict)"),
    ("seed", "", "sim episode seed, an int >= 0 ('' = config files: unseeded)"),
    ("image_size", "", "sim camera image side in pixels ('' = config files: 128)"),
    ("cameras", "", "sim views: exterior | exterior,wrist ('' = the world model's views)"),
)
# goal_planner parameters set by launch arguments: parameter -> argument.
PLANNER_ARGUMENTS = {
    "config": "planner",
    "checkpoint": "checkpoint",
    "device": "device",
    "goal_image": "goal_image",
    "verify": "verify",
}
# mujoco_franka parameters set by launch arguments (ints): parameter -> argument.
SIM_ARGUMENTS = {"seed": "seed", "image_size": "image_size"}


def _typed(value: str) -> object:
    """A launch argument as the parameter value: true/false -> bool, digits -> int."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return int(value) if value.lstrip("-").isdigit() else value


def _planner_params(context) -> dict[str, object]:
    """The goal_planner parameters the user gave as arguments (empty ones keep the files')."""
    params: dict[str, object] = _given(context, PLANNER_ARGUMENTS)
    if "verify" in params:
        params["verify"] = _typed(params["verify"])  # true/false: bool; strict: string
    return params


def _given(context, arguments: dict[str, str]) -> dict[str, str]:
    """The parameters whose launch arguments are not empty (as strings)."""
    given = {p: LaunchConfiguration(a).perform(context) for p, a in arguments.items()}
    return {name: value for name, value in given.items() if value}


def _sim_cameras(context) -> str:
    """The ``cameras`` argument, or the views the planner's world model takes."""
    from planner_ros.bringup import launch_cameras

    given = LaunchConfiguration("cameras").perform(context)
    return given or launch_cameras(LaunchConfiguration("checkpoint").perform(context))


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
                    {
                        "task": LaunchConfiguration("task"),
                        "cameras": _sim_cameras(context),
                        **{k: _typed(v) for k, v in _given(context, SIM_ARGUMENTS).items()},
                    },
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
