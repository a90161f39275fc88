"""``scripts/install.sh`` on a machine whose system Python refuses ``pip install`` (PEP 668).

A scratch interpreter stands in for a distribution's ``python3``: a copy of this Python's binary
beside its standard library (linked, without site-packages) and an ``EXTERNALLY-MANAGED`` marker,
so pip refuses to install into it exactly as on Debian 12 or Ubuntu 24.04. ``install.sh --check``
runs the real environment decision (it makes the virtual environment, asks pip where torch would
come from) and stops before installing anything, keeping the test to seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("bash") is None, reason="install.sh is for Linux"
)


@pytest.fixture(scope="module")
def managed_python(tmp_path_factory) -> Path:
    """``bin/python3`` of a scratch, externally managed (PEP 668) Python installation."""
    base = Path(sys.base_prefix)
    binary = Path(os.path.realpath(base / "bin" / VERSION))
    stdlib = Path(sysconfig.get_path("stdlib", vars={"installed_base": str(base)}))
    if not binary.is_file() or not (stdlib / "os.py").is_file():
        pytest.skip(f"no {VERSION} binary and standard library under {base}")
    root = tmp_path_factory.mktemp("system-python")
    (root / "bin").mkdir()
    shutil.copy2(binary, root / "bin" / "python3")
    lib = root / "lib" / VERSION
    lib.mkdir(parents=True)
    for entry in stdlib.iterdir():
        if entry.name != "site-packages":
            (lib / entry.name).symlink_to(entry)
    (lib / "site-packages").mkdir()
    (lib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=simulated (PEP 668)\n")
    return root / "bin" / "python3"


def repo_copy(root: Path) -> Path:
    """A folder holding this checkout's install script (what install.sh reads of the repo)."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "install.sh", root / "scripts" / "install.sh")
    return root


def run_install(repo: Path, python: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``bash scripts/install.sh ARGS`` with ``python``'s folder first on PATH (as python3)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHON")}
    environ.update(PATH=f"{python.parent}{os.pathsep}{environ['PATH']}", **env)
    command = ["bash", str(repo / "scripts" / "install.sh"), *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=240)


def python_says(python: Path, code: str) -> str:
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_the_scratch_python_refuses_pip_like_a_distribution_python(managed_python):
    """The stand-in really is externally managed: pip (bootstrapped by ensurepip) refuses it."""
    run = subprocess.run(
        [str(managed_python), "-m", "ensurepip"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "externally-managed-environment" in run.stdout + run.stderr
    assert not any((managed_python.parents[1] / "lib" / VERSION / "site-packages").iterdir())


def test_install_makes_a_venv_instead_of_pip_installing_into_the_system_python(
    managed_python, tmp_path
):
    repo = repo_copy(tmp_path / "repo")
    run = run_install(repo, managed_python, "--check")
    assert run.returncode == 0, run.stdout + run.stderr
    venv_python = repo / ".venv" / "bin" / "python"
    assert f"[install] environment: {venv_python} ({repo / '.venv'})" in run.stdout
    source = re.search(r"\[install\] torch source: (\S+)", run.stdout).group(1)
    assert source in ("present", "local", "https://download.pytorch.org/whl/cpu")
    assert "check only: nothing installed" in run.stdout
    # made by the "system" python, isolated from it, and nothing went into the system python
    prefixes = python_says(venv_python, "import sys; print(sys.prefix, sys.base_prefix)")
    assert prefixes == f"{repo / '.venv'} {managed_python.parents[1]}"
    assert not any((managed_python.parents[1] / "lib" / VERSION / "site-packages").iterdir())
    # a second run reuses the environment
    again = run_install(repo, managed_python, "--check")
    assert again.returncode == 0 and "making the virtual environment" not in again.stdout


def test_install_uses_the_active_virtual_environment_and_links_dot_venv(managed_python, tmp_path):
    active = tmp_path / "active"
    subprocess.run([str(managed_python), "-m", "venv", str(active)], check=True, timeout=120)
    repo = repo_copy(tmp_path / "repo")
    run = run_install(repo, managed_python, "--check", VIRTUAL_ENV=str(active))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"[install] environment: {active}/bin/python ({active})" in run.stdout
    assert (repo / ".venv").resolve() == active.resolve()  # the README's .venv/bin/python


def test_install_refuses_an_unknown_option_in_one_line(tmp_path):
    run = run_install(repo_copy(tmp_path / "repo"), Path(sys.executable), "--fast")
    assert run.returncode == 2
    assert run.stderr == "install.sh: unknown option '--fast' (see --help)\n"


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Install and test", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line]
    assert commands == ci[-2:], (commands, ci)
