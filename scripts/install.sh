#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine: the system libraries MuJoCo's offscreen
# renderer needs (OSMesa and EGL, software Mesa), a Python virtual environment (the active one,
# else .venv in this folder: a distribution's own python3 refuses `pip install`, PEP 668), the
# CPU build of PyTorch, then this project with its test tools and the ROS 2 package.
#
#   bash scripts/install.sh            # install (again: only what is missing)
#   bash scripts/install.sh --check    # print the decisions (environment, torch source), make
#                                      # the environment, install nothing
#
# Environment variables:
#   PYTHON           the interpreter (>= 3.11) that makes .venv (default: python3)
#   TORCH_INDEX_URL  where torch 2.13.0 comes from when no local wheel is found (default: the
#                    PyTorch CPU index; https://pypi.org/simple gives the CUDA build on Linux)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

TORCH_VERSION="2.13.0"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
APT_PACKAGES=(libosmesa6 libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglx-mesa0)

say() { echo "[install] $*"; }
die() { echo "[install] error: $*" >&2; exit 1; }

# --- system libraries ----------------------------------------------------------------------
missing_apt_packages() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      echo "$package"
  done
}

apt_install() {
  local missing
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found: install OSMesa/EGL (Mesa) with your package manager"
    return
  fi
  mapfile -t missing < <(missing_apt_packages "$@")
  if [ "${#missing[@]}" -eq 0 ]; then
    say "system libraries: present ($*)"
    return
  fi
  if [ "$CHECK" -eq 1 ]; then
    say "system libraries: would apt-get install ${missing[*]}"
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  say "system libraries: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# --- the Python environment ----------------------------------------------------------------
check_version() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$1 is Python $("$1" -c 'import platform; print(platform.python_version())'), need >= 3.11 (e.g. PYTHON=python3.12)"
}

# Prints the python of the environment to install into: the active virtual environment, or
# .venv here (made with $PYTHON when missing). Never the system interpreter.
choose_environment() {
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    [ -x "$VIRTUAL_ENV/bin/python" ] || die "VIRTUAL_ENV=$VIRTUAL_ENV has no bin/python"
    check_version "$VIRTUAL_ENV/bin/python"
    link_venv "$VIRTUAL_ENV"
    echo "$VIRTUAL_ENV/bin/python"
    return
  fi
  if [ ! -x .venv/bin/python ]; then
    local base="${PYTHON:-python3}"
    command -v "$base" >/dev/null 2>&1 || die "no '$base' found: install Python >= 3.11"
    check_version "$base"
    if ! "$base" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      apt_install python3-venv >&2
    fi
    say "making the virtual environment .venv with $(command -v "$base")" >&2
    "$base" -m venv .venv >&2 || die "'$base -m venv .venv' failed (Debian/Ubuntu: apt-get install python3-venv)"
  fi
  echo "$ROOT/.venv/bin/python"
}

# The tests and the README call .venv/bin/python: point .venv at an active environment that
# lives elsewhere (a folder .venv of its own is left alone, with a note).
link_venv() {
  local target="$1"
  if [ "$(cd "$target" && pwd -P)" = "$(cd .venv 2>/dev/null && pwd -P)" ]; then return; fi
  if [ -L .venv ] || [ ! -e .venv ]; then
    ln -sfn "$target" .venv
    say "using the active environment $target (.venv links to it)" >&2
  else
    say "note: using the active environment $target; .venv here is another one" >&2
  fi
}

# Where torch comes from: "present", "local" (a wheel pip finds without an index, e.g. in
# pip's find-links) or the index URL.
torch_source() {
  local python="$1"
  if "$python" - "$TORCH_VERSION" <<'PY' >/dev/null 2>&1; then
import importlib.metadata as metadata, sys
sys.exit(metadata.version("torch").split("+")[0] != sys.argv[1])
PY
    echo present
  elif "$python" -m pip install --dry-run --no-index --no-deps "torch==$TORCH_VERSION" \
    >/dev/null 2>&1; then
    echo local
  else
    echo "$TORCH_INDEX_URL"
  fi
}

install_torch() {
  local python="$1" source="$2"
  case "$source" in
    present) say "torch $TORCH_VERSION: already installed" ;;
    local)
      say "torch $TORCH_VERSION: installing the local wheel"
      "$python" -m pip install -q --no-index --no-deps "torch==$TORCH_VERSION"
      ;;
    *)
      say "torch $TORCH_VERSION: installing from $source"
      "$python" -m pip install -q "torch==$TORCH_VERSION" --index-url "$source"
      ;;
  esac
}

apt_install "${APT_PACKAGES[@]}"
PY="$(choose_environment)"
"$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip (remake it: rm -r .venv)"
SOURCE="$(torch_source "$PY")"
say "environment: $PY ($("$PY" -c 'import sys; print(sys.prefix)'))"
say "torch source: $SOURCE"
if [ "$CHECK" -eq 1 ]; then
  say "check only: nothing installed"
  exit 0
fi

install_torch "$PY" "$SOURCE"
say "jepa-mpc and its test tools"
"$PY" -m pip install -q --upgrade-strategy only-if-needed -e ".[dev,ros,lerobot]"
# The ROS 2 package (ament_python) installs with pip too, for machines without colcon.
"$PY" -m pip install -q --no-deps -e ros_ws/src/planner
say "done. Run the tests with: .venv/bin/python -m pytest -q"
say "use the tools with: source .venv/bin/activate, then jepa-mpc --help"
