"""The MuJoCo scene: the Franka Panda arm + hand description and meshes shipped with the
installed ``gymnasium_robotics`` package (referenced by path, not copied), placed at the origin of
our own MJCF with a table, a red 5 cm cube, lights, one fixed DROID-style exterior camera and a
wrist camera on the hand (rendered only when asked for: ``cameras``).

World frame = robot base frame: the base sits at the origin, x points away from the robot over
the table, z up, and the table top is the plane z = 0.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from sim.backend import CUBE_SIZE
from sim.hand import TCP_ABOVE_FINGERTIPS

TABLE_HEIGHT = 0.75  # the floor is this far below the table top
# Exterior camera, front-left of the robot looking back at the arm and the workspace.
CAMERA_POSITION = np.array([1.15, -0.78, 0.72])
CAMERA_TARGET = np.array([0.33, 0.0, 0.28])
CAMERA_FOVY = 50.0
# Wrist camera, fixed to link7 (its frame; z runs along the hand toward the fingertips): beside
# the hand, across the fingers' closing axis, looking past the fingertips, so the fingers close
# sideways in its image and the cube between them covers many patches (DROID records one too).
WRIST_CAMERA_POSITION = np.array([0.075, -0.075, 0.10])
WRIST_CAMERA_TARGET = np.array([0.0, 0.0, 0.32])
WRIST_CAMERA_FOVY = 85.0
# Cameras a backend can render, in the order of a multi-view image (views side by side).
CAMERAS = ("exterior", "wrist")
# The kitchen Panda's fingers are 1.75 x Franka's (0.054 m) long: their lowest collision capsule
# ends 0.0945 m past the finger base, which sits 0.1654 m along link7's z axis.
FINGER_BASE = 0.1654
FINGER_LENGTH = 0.0945
# TCP: centre of the fingertip pads on the hand's axis (link7 frame, metres), sim.hand's point.
TCP_OFFSET = FINGER_BASE + FINGER_LENGTH - TCP_ABOVE_FINGERTIPS


class AssetError(FileNotFoundError):
    """The Franka description of gymnasium_robotics could not be found."""


def franka_assets_dir() -> Path:
    """Folder of the Panda MJCF + meshes inside the installed gymnasium_robotics package."""
    spec = importlib.util.find_spec("gymnasium_robotics")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("gymnasium_robotics is not installed; pip install gymnasium-robotics")
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "envs" / "assets" / "kitchen_franka" / "franka_assets"
    for name in ("assets.xml", "chain.xml", "actuator.xml", "meshes"):
        if not (folder / name).exists():
            raise AssetError(f"missing {folder / name} in the installed gymnasium_robotics")
    return folder


def look_at_xyaxes(
    position: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)
) -> str:
    """MJCF ``xyaxes`` of a camera at ``position [3]`` looking at ``target [3]`` with ``up``
    (in the parent frame) toward the top of its image."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.6f}" for v in (*right, *up))


def _robot_elements(folder: Path) -> tuple[list[ET.Element], ET.Element, ET.Element]:
    """(asset/default elements, arm body tree, actuator element) of the Panda description."""
    assets = ET.parse(folder / "assets.xml").getroot()
    shared = [el for el in assets if el.tag in ("asset", "default")]
    arm = ET.parse(folder / "chain.xml").getroot().find("body")
    for body in arm.iter("body"):
        body.set("gravcomp", "1")  # torque-controlled arms compensate gravity in firmware
    link7 = next(b for b in arm.iter("body") if b.get("name") == "panda0_link7")
    ET.SubElement(
        link7,
        "site",
        name="tcp",
        pos=f"0 0 {TCP_OFFSET}",
        euler="0 0 -0.785398",
        size="0.005",
        rgba="0 1 0 0",
        group="4",
    )
    ET.SubElement(
        link7,
        "camera",
        name="wrist",
        pos=" ".join(f"{v:.4f}" for v in WRIST_CAMERA_POSITION),
        # the arm (link7's -z) at the top of the image, the fingertips at the bottom
        xyaxes=look_at_xyaxes(WRIST_CAMERA_POSITION, WRIST_CAMERA_TARGET, up=(0.0, 0.0, -1.0)),
        fovy=f"{WRIST_CAMERA_FOVY}",
    )
    actuator = ET.parse(folder / "actuator.xml").getroot().find("actuator")
    return shared, arm, actuator


_SCENE = """
<mujoco model="jepa_mpc_franka_table">
  <compiler angle="radian" meshdir="{meshdir}" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{offscreen}" offheight="{offscreen}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.4 0.4 0.4" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1=".75 .78 .8" rgb2=".45 .47 .5"
             width="64" height="64"/>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1=".32 .34 .36" rgb2=".26 .28 .3"
             width="256" height="256"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="8 8"/>
    <texture name="wood_tex" type="2d" builtin="flat" rgb1=".62 .5 .36" width="64" height="64"
             mark="random" markrgb=".58 .46 .33" random="0.1"/>
    <material name="table_mat" texture="wood_tex" texrepeat="3 3" specular="0.1"/>
  </asset>
  <worldbody>
    <light pos="0.6 -0.6 2.0" dir="-0.2 0.3 -1" diffuse=".7 .7 .7" castshadow="false"/>
    <light pos="-0.4 0.8 1.8" dir="0.4 -0.4 -1" diffuse=".35 .35 .35" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -{table_height}"
          material="floor_mat"/>
    <geom name="table" type="box" size="0.65 0.75 0.02" pos="0.35 0 -0.02"
          material="table_mat" friction="0.8 0.005 0.0001"/>
    <geom name="table_leg" type="box" size="0.5 0.6 {leg_half}" pos="0.35 0 -{leg_center}"
          rgba=".3 .3 .32 1" contype="0" conaffinity="0"/>
    <camera name="exterior" pos="{cam_pos}" xyaxes="{cam_xyaxes}" fovy="{fovy}"/>
    <body name="cube" pos="0.5 0 {half}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{half} {half} {half}" rgba=".85 .12 .1 1" mass="0.05"
            friction="1.0 0.005 0.0001" condim="4"/>
    </body>
  </worldbody>
</mujoco>
"""


def scene_xml(offscreen: int = 640) -> str:
    """The complete MJCF of the table-top scene as a string (mesh paths absolute)."""
    folder = franka_assets_dir()
    root = ET.fromstring(
        _SCENE.format(
            meshdir=(folder / "meshes").as_posix(),
            offscreen=max(offscreen, 640),
            table_height=TABLE_HEIGHT,
            leg_half=(TABLE_HEIGHT - 0.04) / 2,
            leg_center=0.04 + (TABLE_HEIGHT - 0.04) / 2,
            cam_pos=" ".join(f"{v:.4f}" for v in CAMERA_POSITION),
            cam_xyaxes=look_at_xyaxes(CAMERA_POSITION, CAMERA_TARGET),
            fovy=CAMERA_FOVY,
            half=CUBE_SIZE / 2,
        )
    )
    shared, arm, actuator = _robot_elements(folder)
    for index, element in enumerate(shared):
        root.insert(1 + index, element)
    root.find("worldbody").append(arm)
    root.append(actuator)
    return ET.tostring(root, encoding="unicode")


def check_cameras(cameras: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """Camera names of a multi-view image, checked (comma-separated string or sequence).

    Raises:
        ValueError: empty, repeated or unknown names (the message lists the known ones).
    """
    names = tuple(cameras.split(",")) if isinstance(cameras, str) else tuple(cameras)
    names = tuple(str(name).strip() for name in names)
    unknown = [name for name in names if name not in CAMERAS]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            f"cameras must be distinct names among {', '.join(CAMERAS)}, got {','.join(names)!r}"
        )
    return names


def cameras_for_views(views: int) -> tuple[str, ...]:
    """The cameras a world model with ``views`` views per image takes, in order (exterior
    first, then the wrist camera).

    Raises:
        ValueError: more views than this scene has cameras.
    """
    if not 1 <= views <= len(CAMERAS):
        raise ValueError(f"the sim has {len(CAMERAS)} cameras ({', '.join(CAMERAS)}), not {views}")
    return CAMERAS[:views]


def first_views(image: np.ndarray, views: int) -> np.ndarray:
    """The first ``views`` square views of a side-by-side multi-view image ``[H, k x H, 3]``
    (a single-view model gets the exterior camera of a two-camera render)."""
    return image[:, : views * image.shape[0]]


def project_to_camera(points: np.ndarray, image_size: int) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` (column, row; float, origin at the top-left pixel's corner)
    of world points ``[N, 3]`` in the exterior camera's square ``image_size`` image (both
    backends render this camera); points behind the camera get NaN."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    forward = CAMERA_TARGET - CAMERA_POSITION
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    relative = points - CAMERA_POSITION
    depth = relative @ forward
    focal = image_size / 2.0 / np.tan(np.radians(CAMERA_FOVY) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        column = image_size / 2.0 + focal * (relative @ right) / depth
        row = image_size / 2.0 - focal * (relative @ up) / depth
    pixels = np.stack((column, row), axis=1)
    pixels[depth <= 0] = np.nan
    return pixels
