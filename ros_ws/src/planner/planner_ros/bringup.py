"""In-process bringup for machines without ``ros2 launch``: the same nodes with the same
parameters as ``launch/franka_goal.launch.py``, spun by one executor thread
(``runtime.spin_nodes``), plus a monitor that prints a line per plan (energy, distance, plan
seconds). SIGINT/SIGTERM stop it cleanly (``process``).

    python -m planner_ros.bringup --task reach           # sim-small + fast (config files)
    python -m planner_ros.bringup --task reach --seed 3 --checkpoint state --planner cem_paper
    python -m planner_ros.bringup --no-sim --goal-image goal.png   # real arm (franka_real.yaml)
    python -m planner_ros.bringup --set goal_planner.rate_hz=2 --image-size 64
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from planner_ros.process import NodeFactory, exit_code, run_nodes
from planner_ros.runtime import as_parameters, config_file, load_params
from world_model.console import CommandLineParser

NODES = ("goal_planner", "mujoco_franka")


class BringupError(ValueError):
    """A bad command-line option (e.g. a malformed ``--set``)."""


@dataclass
class BringupOptions:
    """The launch file's arguments plus per-node parameter overrides. ``None`` (or ``''``) keeps
    the config files' value, as an empty launch argument does."""

    use_sim: bool = True
    task: str = "reach"
    goal_image: str | None = None
    checkpoint: str | None = None
    planner: str | None = None
    device: str | None = None
    verify: str | None = None
    seed: int | None = None
    image_size: int | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> {param: value}


def node_parameters(options: BringupOptions) -> dict[str, dict[str, Any]]:
    """``{node_name: {param: value}}`` for the nodes to start, in the launch file's order of
    precedence: config/<node>.yaml, franka_real.yaml (real arm), arguments, ``--set``."""
    planner = load_params(config_file("goal_planner"), "goal_planner")
    if not options.use_sim:
        planner.update(load_params(config_file("franka_real"), "goal_planner"))
    given = {
        "config": options.planner,
        "checkpoint": options.checkpoint,
        "device": options.device,
        "goal_image": options.goal_image,
        "verify": yaml.safe_load(options.verify) if options.verify else None,  # true -> bool
    }
    planner.update({name: value for name, value in given.items() if value not in (None, "")})
    params = {"goal_planner": planner}
    if options.use_sim:
        sim = load_params(config_file("mujoco_franka"), "mujoco_franka")
        sim_given = {"seed": options.seed, "image_size": options.image_size}
        sim.update({name: value for name, value in sim_given.items() if value is not None})
        params["mujoco_franka"] = {**sim, "task": options.task}
    for node, values in options.overrides.items():
        if node not in params:
            raise BringupError(f"--set names node {node!r}, which is not started")
        params[node].update(values)
    sim_overrides = options.overrides.get("mujoco_franka", {})
    if "mujoco_franka" in params and "cameras" not in sim_overrides:
        params["mujoco_franka"]["cameras"] = sim_cameras(planner.get("checkpoint"))
    return params


def launch_cameras(checkpoint: str) -> str:
    """``sim_cameras`` for the launch file's ``checkpoint`` argument ('' = the one
    config/goal_planner.yaml names)."""
    if not checkpoint:
        checkpoint = load_params(config_file("goal_planner"), "goal_planner").get("checkpoint")
    return sim_cameras(checkpoint)


def sim_cameras(checkpoint: object) -> str:
    """The camera views the sim publishes side by side: those the planner's world model takes
    (exterior, or exterior + wrist for a two-view model); ``exterior`` when the checkpoint
    names nothing (``check_parameters`` reports that)."""
    from sim.scene import cameras_for_views
    from world_model.resolve import spec_views

    try:
        return ",".join(cameras_for_views(spec_views(str(checkpoint))))
    except (ValueError, FileNotFoundError):
        return "exterior"


def check_parameters(params: dict[str, dict[str, Any]]) -> None:
    """The checks a node would fail at start-up, done before any node starts (one line, no
    node logs first): the sim's task, the planner's device, preset (with its overrides) and
    checkpoint (named, not loaded).

    Raises:
        ValueError (DeviceError, ConfigError, ...), FileNotFoundError: the first bad one.
    """
    from planner.config import load_planner_config
    from planner_ros.models import preset_for
    from sim.tasks import TASK_NAMES
    from world_model.console import device_option
    from world_model.resolve import check_model_spec

    if "mujoco_franka" in params:
        task = params["mujoco_franka"].get("task")
        if task not in TASK_NAMES:
            raise BringupError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    planner = params["goal_planner"]
    device_option(str(planner.get("device", "auto")))
    overrides = [item for item in planner.get("planner_overrides") or [] if str(item).strip()]
    load_planner_config(preset_for(planner.get("config"), planner.get("checkpoint")), overrides)
    check_model_spec(planner.get("checkpoint"))


def node_factories(options: BringupOptions) -> list[NodeFactory]:
    """One factory per node to start: the sim (if ``use_sim``), then the goal planner."""
    from planner_ros import goal_planner, mujoco_franka

    params = node_parameters(options)
    check_parameters(params)
    factories: list[NodeFactory] = []
    if "mujoco_franka" in params:
        sim = _typed(params["mujoco_franka"], mujoco_franka.PARAMETERS)
        factories.append(
            lambda context: mujoco_franka.MujocoFrankaNode(context=context, parameter_overrides=sim)
        )
    planner = _typed(params["goal_planner"], goal_planner.PARAMETERS)
    factories.append(
        lambda context: goal_planner.GoalPlannerNode(context=context, parameter_overrides=planner)
    )
    return factories


def create_nodes(options: BringupOptions, context: Context | None = None) -> list[Node]:
    """Construct the sim node (if ``use_sim``) and the goal planner in ``context``."""
    return [factory(context) for factory in node_factories(options)]


def _typed(values: dict[str, Any], defaults: dict[str, Any]) -> list:
    """Parameters with ints widened where the node declares a float (``rate_hz=2``); empty
    lists (no ROS type) are left out, keeping the node's declared default."""
    typed = {}
    for name, value in values.items():
        if isinstance(defaults.get(name), float) and isinstance(value, int):
            value = float(value)
        if value != []:
            typed[name] = value
    return as_parameters(typed)


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["node.param=value", ...]`` (value parsed as YAML) -> ``{node: {param: value}}``."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or node not in NODES or not name:
            raise BringupError(
                f"--set {item!r}: expected NODE.PARAM=VALUE with NODE one of {', '.join(NODES)}"
            )
        overrides.setdefault(node, {})[name] = yaml.safe_load(raw)
    return overrides


def parse_args(argv: list[str]) -> tuple[BringupOptions, float, bool]:
    """Command line -> (options, duration_s (0 = until Ctrl-C), quiet)."""
    parser = CommandLineParser("python -m planner_ros.bringup", description=__doc__)
    parser.add_argument("--no-sim", dest="use_sim", action="store_false", help="real arm topics")
    parser.add_argument("--task", default="reach", help="sim task")
    keep = "default: the config files' value"
    parser.add_argument("--goal-image", help=f"goal image file ({keep}: '' = goal/image topic)")
    parser.add_argument("--checkpoint", help=f"'state' = ground-truth states ({keep}: sim-small)")
    parser.add_argument(
        "--planner",
        help=f"preset in configs/planner/ ({keep}: '' = fast with sim-small, else icem)",
    )
    parser.add_argument("--device", help=f"auto | cpu | cuda ({keep}: auto)")
    parser.add_argument("--verify", help=f"checkpoint sha256: true | strict | false ({keep})")
    parser.add_argument("--seed", type=int, help=f"sim episode seed ({keep}: -1, unseeded)")
    parser.add_argument("--image-size", type=int, help=f"sim camera pixels ({keep}: 128)")
    parser.add_argument("--quiet", action="store_true", help="no line per plan")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: forever)")
    args = parser.parse_args(argv)
    options = BringupOptions(
        use_sim=args.use_sim,
        task=args.task,
        goal_image=args.goal_image,
        checkpoint=args.checkpoint,
        planner=args.planner,
        device=args.device,
        verify=args.verify,
        seed=args.seed,
        image_size=args.image_size,
        overrides=parse_set(args.set),
    )
    return options, args.duration, args.quiet


def run(argv: list[str] | None = None) -> int:
    """Start the nodes (and the plan monitor), run until SIGINT/SIGTERM or ``--duration``,
    shut down; returns the exit code (2: a bad option, or a node that could not start)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options, duration, quiet = parse_args(remove_ros_args(argv))
        factories = node_factories(options)
    except (BringupError, ValueError, FileNotFoundError) as error:
        print(f"bringup: {error}", file=sys.stderr)
        return 2
    if not quiet:
        from planner_ros.monitor import PlanMonitor

        factories.append(lambda context: PlanMonitor(context=context))
    return run_nodes(factories, "bringup", argv, duration_s=duration)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point ``bringup``; ROS arguments (``--ros-args ...``) apply to all nodes."""
    exit_code(run(argv))


if __name__ == "__main__":
    main()
