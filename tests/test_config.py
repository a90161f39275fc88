"""Typed YAML config loading (robots.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from robots.config import ConfigError, apply_overrides, from_dict, load_config, read_yaml


@dataclass
class Inner:
    radius: float = 0.075
    axes: tuple[int, ...] = (0, 1, 2)


@dataclass
class Outer:
    name: str = "cem"
    samples: int = 800
    inner: Inner = field(default_factory=Inner)
    seed: int | None = None


def test_from_dict_builds_nested_dataclasses() -> None:
    cfg = from_dict(Outer, {"samples": 16, "inner": {"radius": 1, "axes": [0, 2]}})
    assert cfg.samples == 16
    assert cfg.inner == Inner(radius=1.0, axes=(0, 2))
    assert isinstance(cfg.inner.radius, float)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"samplez"):
        from_dict(Outer, {"samplez": 3})
    with pytest.raises(ConfigError, match=r"inner.*radiu"):
        from_dict(Outer, {"inner": {"radiu": 3}})


def test_float_fields_accept_exponents_without_a_dot() -> None:
    # YAML 1.1 (PyYAML) reads "3e-4" as a string; a float field must still get 0.0003.
    data = apply_overrides({}, ["inner.radius=3e-4"])
    assert data == {"inner": {"radius": "3e-4"}}
    assert from_dict(Outer, data).inner.radius == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match=r"inner.radius.*number.*'wide'"):
        from_dict(Outer, {"inner": {"radius": "wide"}})


def test_overrides_parse_yaml_values_and_reject_bad_syntax() -> None:
    data = apply_overrides({"inner": {"radius": 0.1}}, ["inner.radius=0.2", "seed=3"])
    assert data == {"inner": {"radius": 0.2}, "seed": 3}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["samples"])


def test_load_config_from_path(tmp_path: Path) -> None:
    path = tmp_path / "planner.yaml"
    path.write_text("samples: 32\ninner:\n  radius: 0.05\n")
    cfg = load_config(Outer, path, group="planner", overrides=["name=icem"])
    assert (cfg.samples, cfg.inner.radius, cfg.name) == (32, 0.05, "icem")
    assert read_yaml(path)["samples"] == 32


def test_missing_config_lists_known_names() -> None:
    with pytest.raises(FileNotFoundError, match="no robot config named 'nope'"):
        load_config(Outer, "nope", group="robot")
    with pytest.raises(FileNotFoundError):
        load_config(Outer, "/does/not/exist.yaml", group="robot")


def test_a_base_config_is_merged_under_the_file_key_by_key(tmp_path: Path) -> None:
    parent = tmp_path / "parent.yaml"
    parent.write_text("name: icem\nsamples: 64\ninner:\n  radius: 0.05\n  axes: [0]\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {parent}\nsamples: 16\ninner:\n  radius: 0.1\n")
    cfg = load_config(Outer, child, group="planner", overrides=["seed=4"])
    assert cfg == Outer(name="icem", samples=16, inner=Inner(radius=0.1, axes=(0,)), seed=4)
    parent.write_text(f"base: {child}\n")
    with pytest.raises(ConfigError, match="config bases loop: child -> parent -> child"):
        load_config(Outer, child, group="planner")
    child.write_text("base: [1, 2]\n")
    with pytest.raises(ConfigError, match="child: base must be a config name"):
        load_config(Outer, child, group="planner")
