"""The layering of DESIGN.md, read from the source (every import statement, including those inside
functions and ``TYPE_CHECKING`` blocks): imports point one way, from the applications
(``jepa_mpc``) and ``ros_ws`` down through ``planner`` and ``sim`` to ``world_model`` and
``robots``; nothing below the application layer imports it; no module imports itself back."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_SOURCE = REPO / "ros_ws" / "src" / "planner"
PACKAGES = ("robots", "world_model", "planner", "sim", "jepa_mpc")
APP = "jepa_mpc"
# package -> top-level names it must not import (DESIGN.md, "Packages ... must not")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "robots": ("world_model", "planner", "sim", APP, "planner_ros", "rclpy", "mujoco"),
    "world_model": ("planner", "sim", APP, "planner_ros", "rclpy", "mujoco", "pybullet"),
    "planner": ("sim", APP, "planner_ros", "rclpy", "mujoco"),
    "sim": ("planner", APP, "planner_ros", "rclpy"),
    "ros_ws": (APP,),
}


def module_name(path: Path, root: Path) -> str:
    """``planner/actors/cem.py`` -> ``planner.actors.cem``; a package's ``__init__`` -> it."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every project module: the packages at the top and ``planner_ros`` (module -> file)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            modules[module_name(path, REPO)] = path
    for path in sorted((ROS_SOURCE / "planner_ros").rglob("*.py")):
        modules[module_name(path, ROS_SOURCE)] = path
    return modules


def imported_names(path: Path, module: str) -> Iterator[str]:
    """Dotted names ``path`` imports: ``import a.b`` -> a.b; ``from a.b import c`` -> a.b.c
    (a module or a name in one; relative imports resolved against ``module``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*anchor, base]))
            yield from (f"{base}.{alias.name}" for alias in node.names)


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module a dotted import name lands on (its longest module prefix), if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    modules = source_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(name, modules) for name in imported_names(path, module)}
        graph[module] = {target for target in targets if target and target != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (module names, first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_files(layer: str) -> list[Path]:
    """The Python files of a layer (``ros_ws``: the ROS package's modules, launch and setup)."""
    root = ROS_SOURCE if layer == "ros_ws" else REPO / layer
    return sorted(root.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_upward_or_the_application_layer(layer: str) -> None:
    banned = FORBIDDEN[layer]
    offences = []
    for path in layer_files(layer):
        module = module_name(path, ROS_SOURCE if layer == "ros_ws" else REPO)
        for name in imported_names(path, module):
            if name.split(".")[0] in banned:
                offences.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offences, "\n".join(offences)


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    assert "jepa_mpc.bench" in graph and "planner_ros.goal_planner" in graph  # all were read
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_see_cycles_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a two-module cycle is found, a chain is not; ``from . import x`` in a
    package resolves to its sibling."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("from . import sibling\nfrom .sub.deep import name\n")
    assert list(imported_names(package / "mod.py", "pkg.mod")) == [
        "pkg.sibling",
        "pkg.sub.deep.name",
    ]
