"""The ROS 2 package ``planner`` as files: ament_python layout, entry points, parameter YAML files
that match the nodes' declared parameters, and a launch file that is valid Python using the
standard ``launch``/``launch_ros`` API (``launch`` itself is not installed here)."""

from __future__ import annotations

import ast
import py_compile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "planner"
LAUNCH = PACKAGE / "launch" / "franka_goal.launch.py"
LAUNCH_ARGUMENTS = {
    *("use_sim", "task", "goal_image", "checkpoint", "planner", "device"),
    *("verify", "seed", "image_size", "cameras"),
}


def _setup_call() -> ast.Call:
    tree = ast.parse((PACKAGE / "setup.py").read_text())
    return next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )


def test_ament_python_layout():
    root = ET.parse(PACKAGE / "package.xml").getroot()
    assert root.findtext("name") == "planner"
    assert root.find("export/build_type").text == "ament_python"
    depends = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "std_srvs", "diagnostic_msgs"} <= depends
    assert (PACKAGE / "resource" / "planner").is_file()
    assert "install_scripts=$base/lib/planner" in (PACKAGE / "setup.cfg").read_text()
    assert (PACKAGE / "planner_ros" / "__init__.py").is_file()
    assert not (PACKAGE / "planner").exists()  # must not shadow the library package


def test_setup_declares_the_console_entry_points():
    keywords = {k.arg: k.value for k in _setup_call().keywords}
    assert getattr(keywords["name"], "id", None) == "PACKAGE"
    assert 'PACKAGE = "planner"' in (PACKAGE / "setup.py").read_text()
    scripts = ast.literal_eval(keywords["entry_points"])["console_scripts"]
    entry = dict(s.replace(" ", "").split("=") for s in scripts)
    assert entry == {
        "goal_planner": "planner_ros.goal_planner:main",
        "mujoco_franka": "planner_ros.mujoco_franka:main",
        "bringup": "planner_ros.bringup:main",
    }
    data_files = ast.dump(keywords["data_files"])
    assert "launch/*.launch.py" in data_files and "config/*.yaml" in data_files


def test_launch_file_is_valid_python_with_the_documented_arguments(tmp_path):
    py_compile.compile(str(LAUNCH), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    tree = ast.parse(LAUNCH.read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {"launch", "launch.actions", "launch_ros.actions"} <= imported
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    arguments = next(
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGUMENTS"
    )
    assert {name for name, _, _ in arguments} == LAUNCH_ARGUMENTS
    defaults = {name: default for name, default, _ in arguments}
    assert defaults["use_sim"] == "true"
    # Unset model arguments keep the config files' values (sim-small; franka_real.yaml's on the
    # real arm), so `use_sim:=false` alone never plans with the sim-only state model, and
    # verifies strictly.
    assert defaults["checkpoint"] == defaults["planner"] == defaults["device"] == ""
    assert defaults["verify"] == defaults["seed"] == defaults["image_size"] == ""
    assert defaults["cameras"] == ""  # the views the world model takes (bringup.launch_cameras)
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert {"goal_planner", "mujoco_franka"} <= strings  # executables of setup.py
    for config in ("goal_planner.yaml", "mujoco_franka.yaml", "franka_real.yaml"):
        assert config in strings and (PACKAGE / "config" / config).is_file()


@pytest.mark.parametrize(
    ("config", "node", "module"),
    [
        ("goal_planner", "goal_planner", "goal_planner"),
        ("franka_real", "goal_planner", "goal_planner"),
        ("mujoco_franka", "mujoco_franka", "mujoco_franka"),
    ],
)
def test_parameter_files_name_only_declared_parameters(config, node, module):
    pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
    import importlib

    declared = importlib.import_module(f"planner_ros.{module}").PARAMETERS
    content = yaml.safe_load((PACKAGE / "config" / f"{config}.yaml").read_text())
    params = content[node]["ros__parameters"]
    assert set(params) <= set(declared), set(params) - set(declared)
    if config != "franka_real":  # the full files list every parameter
        assert set(params) == set(declared)


def test_launch_arguments_become_typed_parameters():
    """seed:=3 and image_size:=64 reach the sim as ints, verify:=true as a bool and
    verify:=strict as a string (the functions run without the launch package)."""
    tree = ast.parse(LAUNCH.read_text())
    typed = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_typed")
    namespace: dict = {}
    exec(compile(ast.Module(body=[typed], type_ignores=[]), str(LAUNCH), "exec"), namespace)
    convert = namespace["_typed"]
    assert convert("3") == 3 and convert("64") == 64
    assert convert("true") is True and convert("False") is False
    assert convert("strict") == "strict"


def test_real_arm_config_verifies_strictly_and_never_resyncs():
    real = yaml.safe_load((PACKAGE / "config" / "franka_real.yaml").read_text())
    params = real["goal_planner"]["ros__parameters"]
    assert params["verify"] == "strict" and params["resync_s"] == 0.0
