"""Typed configuration: YAML files under ``configs/`` loaded into dataclasses, with unknown keys
rejected by name and ``key=value`` overrides from the command line. Shared by every package
(``robots`` is the lowest layer of the dependency graph).

The presets are data of the distribution: ``configs/`` sits beside the packages both in a source
checkout and in an installed wheel (``pyproject.toml`` ships it as package data)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout, or site-packages when installed
CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A config file or override that does not match the dataclass it configures."""


def find_config(name_or_path: str | Path, group: str) -> Path:
    """Resolve a YAML path, or a name meaning ``configs/<group>/<name>.yaml``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    candidate = CONFIG_DIR / group / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = list_presets(group)
        raise FileNotFoundError(
            f"no {group} config named {name_or_path!r}; known: {', '.join(known) or 'none'}"
        )
    return candidate


def preset_groups() -> list[str]:
    """The preset groups: folders of ``configs/`` (bench, model, planner, robot, task, train)."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def list_presets(group: str) -> list[str]:
    """Names of the presets of ``group`` (``configs/<group>/<name>.yaml``), sorted."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; an empty file is an empty mapping."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    Unknown keys raise ``ConfigError`` naming the key and the valid ones.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} in {where or cls.__name__}; "
            f"valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                return _coerce(arg, value, where)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads exponents without a dot (``lr: 3e-4``) as strings; accept them.
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested mapping, in a copy."""
    result = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_config(
    cls: type[T], name_or_path: str | Path, group: str, overrides: list[str] | None = None
) -> T:
    """Load ``configs/<group>/<name>.yaml`` (or a path) into ``cls``, applying overrides. A
    file with ``base: <name>`` is that config of the same group with the file's keys merged
    over it (nested sections key by key)."""
    path = find_config(name_or_path, group)
    data = apply_overrides(
        with_base(read_yaml(path), group, (Path(path).resolve(),)), overrides or []
    )
    return from_dict(cls, data, where=path.stem)


def with_base(data: dict[str, Any], group: str, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``data`` merged over the config its ``base`` key names (recursively), without the key;
    ``seen``: the files already on this chain (the first is the file ``data`` came from).

    Raises:
        ConfigError: ``base`` is not a name, or the bases loop.
    """
    if "base" not in data:
        return data
    child = dict(data)
    base = child.pop("base")
    where = seen[-1].stem if seen else group
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}: base must be a config name, got {base!r}")
    path = Path(find_config(base, group)).resolve()
    if path in seen:
        names = " -> ".join(p.stem for p in (*seen, path))
        raise ConfigError(f"config bases loop: {names}")
    return merged(with_base(read_yaml(path), group, (*seen, path)), child)


def merged(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``parent``: nested mappings merged key by key, anything else replaced."""
    result = _deep_copy(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = _deep_copy(value) if isinstance(value, dict) else value
    return result
