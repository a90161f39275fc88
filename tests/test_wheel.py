"""The built wheel is usable where the source tree is not: it holds every preset of ``configs/``,
the bundled models (``sim-small``, ``sim-small-v2``, with their checksum records) and the app
layer, its console script points at ``jepa_mpc.cli``, and ``jepa-mpc presets`` run from the
unpacked wheel, away from the checkout, finds the presets. (No install, no torch download: the
wheel is built from a copy of the sources with the interpreter's own setuptools and unpacked.)"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("planner", "world_model", "robots", "sim", "jepa_mpc", "configs")
BUNDLED = ("config.json", "model.safetensors", "MODEL_CARD.md", "SHA256SUMS")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of the sources (no stale ``build/`` can leak in)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--no-cache-dir", "-q", "-w", str(root / "dist"), str(source)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (built,) = (root / "dist").glob("jepa_mpc-*.whl")
    return built


def test_wheel_holds_the_presets_the_bundled_model_and_the_apps(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert presets and presets <= names, sorted(presets - names)
    for bundled in ("sim-small", "sim-small-v2"):
        model = {f"world_model/checkpoints/{bundled}/{name}" for name in BUNDLED}
        assert model <= names, sorted(model - names)
    apps = {p.relative_to(REPO).as_posix() for p in (REPO / "jepa_mpc").glob("*.py")}
    assert apps <= names, sorted(apps - names)
    assert not any(name.startswith(("tests/", "ros_ws/", "scripts/")) for name in names)


def test_console_script_is_the_app_dispatcher(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        points = configparser.ConfigParser()
        points.read_string(archive.read(entry).decode())
    assert points["console_scripts"]["jepa-mpc"] == "jepa_mpc.cli:main"


def test_presets_are_found_from_the_unpacked_wheel_outside_the_checkout(wheel, tmp_path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import sys, robots.config as c; from jepa_mpc.cli import main; "
        "print('CONFIG_DIR', c.CONFIG_DIR); sys.exit(main(['presets', 'planner', 'icem']))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"CONFIG_DIR {site / 'configs'}" in run.stdout
    assert "actor.name" in run.stdout and "'icem'" in run.stdout
