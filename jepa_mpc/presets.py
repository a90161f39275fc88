"""``jepa-mpc presets``: the presets in ``configs/`` and the keys they take, up front.

jepa-mpc presets                 # every group and its preset names
jepa-mpc presets planner         # the keys a planner preset (or a key=value override) sets
jepa-mpc presets planner icem    # one preset's values, defaults filled in
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from robots.config import CONFIG_DIR, list_presets, load_config, preset_groups
from world_model.console import CommandLineParser


class PresetError(ValueError):
    """An unknown preset group (the message lists the known ones)."""


def group_classes() -> dict[str, type]:
    """Preset group -> the dataclass its YAML files fill (imported here, the app layer)."""
    from jepa_mpc.bench_config import BenchConfig
    from planner.config import PlannerConfig
    from robots.franka import FrankaLimits
    from sim.tasks import TaskConfig
    from world_model.config import WorldModelConfig
    from world_model.train import TrainConfig

    return {
        "bench": BenchConfig,
        "model": WorldModelConfig,
        "planner": PlannerConfig,
        "robot": FrankaLimits,
        "task": TaskConfig,
        "train": TrainConfig,
    }


def keys(cls: type, prefix: str = "") -> list[tuple[str, str, Any]]:
    """Every settable key of dataclass ``cls``, nested sections dotted:
    [(``actor.samples``, type name, default)]."""
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, Any]] = []
    for field in dataclasses.fields(cls):
        name, hint = f"{prefix}{field.name}", hints[field.name]
        if dataclasses.is_dataclass(hint):
            rows += keys(hint, f"{name}.")
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        rows.append((name, _type_name(hint), default))
    return rows


def _type_name(hint: Any) -> str:
    """``int``, ``float | None``, ``tuple[str, ...]``: a type as a user writes it."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def values(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A loaded config's values, nested sections dotted: [(``actor.samples``, 128), ...]."""
    rows: list[tuple[str, Any]] = []
    for field in dataclasses.fields(config):
        name, value = f"{prefix}{field.name}", getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            rows += values(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def check_group(group: str) -> type:
    """The dataclass of ``group``; raises PresetError naming the known groups."""
    classes = group_classes()
    if group not in classes:
        raise PresetError(f"unknown preset group {group!r}; known: {', '.join(classes)}")
    return classes[group]


def overview() -> list[str]:
    """Lines: each group with its preset names."""
    groups = preset_groups()
    width = max((len(group) for group in groups), default=0)
    lines = [f"presets in {CONFIG_DIR} (give a name where a command takes a preset):"]
    lines += [f"  {group:<{width}}  {', '.join(list_presets(group))}" for group in groups]
    lines += [
        "",
        "'jepa-mpc presets <group>' lists the keys a group's presets take (also as key=value "
        "overrides); 'jepa-mpc presets <group> <name>' shows one preset's values.",
    ]
    return lines


def group_keys(group: str) -> list[str]:
    """Lines: the keys of ``group``'s presets with their types and defaults."""
    rows = keys(check_group(group))
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{group} presets: {', '.join(list_presets(group)) or 'none'}", "keys (default):"]
    lines += [f"  {name:<{width}}  {kind} = {default!r}" for name, kind, default in rows]
    return lines


def preset_values(group: str, name: str) -> list[str]:
    """Lines: preset ``name`` of ``group`` loaded (defaults filled in), one key a line."""
    config = load_config(check_group(group), name, group)
    rows = values(config)
    width = max(len(key) for key, _ in rows)
    return [f"{group} preset {name}:"] + [f"  {key:<{width}}  {value!r}" for key, value in rows]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc presets``; 2 on an unknown group or preset."""
    parser = CommandLineParser("jepa-mpc presets", description=__doc__)
    parser.add_argument("group", nargs="?", help="bench, model, planner, robot, task or train")
    parser.add_argument("name", nargs="?", help="a preset of that group")
    args = parser.parse_args(argv)
    try:
        if args.group is None:
            lines = overview()
        elif args.name is None:
            lines = group_keys(args.group)
        else:
            lines = preset_values(args.group, args.name)
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc presets: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
