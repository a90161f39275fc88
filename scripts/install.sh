#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine: the system libraries MuJoCo's offscreen
# renderer needs (OSMesa and EGL, software Mesa), then this project with its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libosmesa6 libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglx-mesa0 >/dev/null
else
  echo "apt-get not found: install OSMesa/EGL (Mesa) with your package manager" >&2
fi

python3 -m pip install --upgrade-strategy only-if-needed -e ".[dev,ros,lerobot]"
# The ROS 2 package (ament_python) installs with pip too, for machines without colcon.
python3 -m pip install --no-deps -e ros_ws/src/planner
