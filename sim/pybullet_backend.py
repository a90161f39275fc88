"""PyBullet implementation of :class:`sim.backend.Backend`: the Panda of ``pybullet_data`` on a
table with a red 5 cm cube, driven by differential IK (damped least squares on
``calculateJacobian``) into joint position motors, rendered headless with ``ER_TINY_RENDERER``
from the exterior camera of ``sim.scene``. One DIRECT physics client per instance.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import pybullet
import pybullet_data
import torch
from pybullet_utils.bullet_client import BulletClient

from robots.franka import (
    HOME_QPOS,
    JOINT_LOWER,
    JOINT_UPPER,
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_rotvec,
)
from sim.backend import CONTROL_DT, CUBE_SIZE, closedness_from_width, finger_joint_from_closedness
from sim.hand import (
    GRASP_FORCE,
    TCP_ABOVE_FINGERTIPS,
    TOUCH_DISTANCE,
    holds,
    width_from_closedness,
)
from sim.scene import CAMERA_FOVY, CAMERA_POSITION, CAMERA_TARGET, TABLE_HEIGHT, check_cameras

PANDA_URDF = "franka_panda/panda.urdf"
ARM_JOINTS = tuple(range(7))  # panda_joint1..7 (Franka's own zeros, unlike the MJCF)
FINGER_JOINTS = (9, 10)  # panda_finger_joint1/2
HAND_LINK = 8  # panda_hand: the TCP frame is this frame shifted along its z axis
# Franka's fingers: base 0.0584 m along the hand's z axis, 0.0539 m long (pybullet_data mesh).
FINGER_BASE = 0.0584
FINGER_LENGTH = 0.0539
# TCP: centre of the fingertip pads (sim.hand's point), hand frame: Franka's own 0.1034 m.
TCP_OFFSET = FINGER_BASE + FINGER_LENGTH - TCP_ABOVE_FINGERTIPS
ARM_FORCES = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])  # Nm, Franka's torque limits
FINGER_FORCE = 40.0  # N per finger, the position motors' limit while tracking a width
TIMESTEP = 1.0 / 240.0
REST_QPOS = np.array(HOME_QPOS)  # posture the IK null space pulls toward
DEFAULT_CUBE = np.array([0.5, 0.0, CUBE_SIZE / 2])
TABLE_RGBA = (0.62, 0.5, 0.36, 1.0)
CUBE_RGBA = (0.85, 0.12, 0.1, 1.0)
BACKGROUND_RGB = (150, 156, 163)


@dataclass
class BulletSnapshot:
    """A saved pybullet state (id inside its client) plus what pybullet does not save."""

    client: BulletClient
    state_id: int
    arm_target: np.ndarray
    finger_target: float
    time: float
    _finalizer: weakref.finalize | None = field(default=None, repr=False, compare=False)


def _euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    return euler_to_matrix(torch.as_tensor(euler, dtype=torch.float64)).numpy()


def _rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vector [3] taking rotation ``current`` to ``target`` (3x3 each)."""
    return matrix_to_rotvec(torch.from_numpy(target @ current.T)).numpy()


def _checked(name: str, values: np.ndarray, size: int) -> np.ndarray:
    """``values`` as a finite float64 vector ``[size]``, else a ValueError naming ``name``."""
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite vector of shape ({size},), got {values!r}")
    return array


def _free_state(client: BulletClient, state_id: int) -> None:
    """Remove a saved state unless its client is already gone."""
    if client.isConnected():
        client.removeState(state_id)


class PybulletBackend:
    """Franka table-top scene in PyBullet (see ``sim.backend`` for the contract)."""

    def __init__(
        self,
        image_size: int = 256,
        control_dt: float = CONTROL_DT,
        ik_damping: float = 0.05,
        cameras: tuple[str, ...] | str = ("exterior",),
    ) -> None:
        self.cameras = check_cameras(cameras)
        if self.cameras != ("exterior",):
            raise ValueError(
                "the pybullet backend renders the exterior camera only, not "
                f"{','.join(self.cameras)} (use backend mujoco for a wrist view)"
            )
        self.image_size = int(image_size)
        self.substeps = max(1, round(control_dt / TIMESTEP))
        self.control_dt = self.substeps * TIMESTEP
        self.ik_damping = ik_damping
        self._lower, self._upper = np.array(JOINT_LOWER), np.array(JOINT_UPPER)
        self._client = BulletClient(connection_mode=pybullet.DIRECT)
        self._client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self._client.setGravity(0.0, 0.0, -9.81)
        self._client.setTimeStep(TIMESTEP)
        # Sorted broadphase pairs: stepping after restore() does not depend on the history.
        self._client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self._robot = self._load_robot(self._client)
        # The base pose as pybullet reports it (its inertial frame, not the URDF origin).
        self._robot_base = self._client.getBasePositionAndOrientation(self._robot)
        self._couple_fingers()
        self._table = self._build_table()
        self._cube = self._build_cube()
        # A second, robot-only client for kinematic IK so solving never disturbs the live state.
        self._ik_client = BulletClient(connection_mode=pybullet.DIRECT)
        self._ik_client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self._ik_robot = self._load_robot(self._ik_client)
        hand_com = np.array(self._client.getDynamicsInfo(self._robot, HAND_LINK)[3])
        self._tcp_in_com = np.array([0.0, 0.0, TCP_OFFSET]) - hand_com  # Jacobian point
        self._view = self._client.computeViewMatrix(CAMERA_POSITION, CAMERA_TARGET, [0, 0, 1])
        self._projection = self._client.computeProjectionMatrixFOV(CAMERA_FOVY, 1.0, 0.05, 10.0)
        self._arm_target = REST_QPOS.copy()
        self._finger_target = 0.04
        self._time = 0.0
        self._closed = False
        self._initial_state = self._client.saveState()  # reset() starts from a clean world

    # -- scene construction --------------------------------------------------------------------

    @staticmethod
    def _load_robot(client: BulletClient) -> int:
        robot = client.loadURDF(
            PANDA_URDF, useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE
        )
        for joint in FINGER_JOINTS:
            client.changeDynamics(robot, joint, lateralFriction=1.5, spinningFriction=0.01)
        return robot

    def _couple_fingers(self) -> None:
        """Gear the two fingers together (as the real hand's mechanism does), so the grip stays
        centred when both finger motors saturate squeezing a cube."""
        gear = self._client.createConstraint(
            self._robot,
            FINGER_JOINTS[0],
            self._robot,
            FINGER_JOINTS[1],
            jointType=pybullet.JOINT_GEAR,
            jointAxis=[1, 0, 0],
            parentFramePosition=[0, 0, 0],
            childFramePosition=[0, 0, 0],
        )
        self._client.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50)

    def _build_table(self) -> int:
        """Table top (top face at z = 0), a visual-only leg block and the floor; returns the
        table top's body id."""
        client = self._client
        top = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[0.65, 0.75, 0.02])
        top_visual = client.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[0.65, 0.75, 0.02], rgbaColor=TABLE_RGBA
        )
        table = client.createMultiBody(0, top, top_visual, basePosition=[0.35, 0.0, -0.02])
        client.changeDynamics(table, -1, lateralFriction=0.8)
        leg_half = (TABLE_HEIGHT - 0.04) / 2
        leg = client.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[0.5, 0.6, leg_half], rgbaColor=(0.3, 0.3, 0.32, 1)
        )
        client.createMultiBody(0, -1, leg, basePosition=[0.35, 0.0, -0.04 - leg_half])
        floor = client.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[3.0, 3.0, 0.01], rgbaColor=(0.29, 0.31, 0.33, 1)
        )
        client.createMultiBody(0, -1, floor, basePosition=[0.0, 0.0, -TABLE_HEIGHT - 0.01])
        return table

    def _build_cube(self) -> int:
        client, half = self._client, CUBE_SIZE / 2
        shape = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[half] * 3)
        visual = client.createVisualShape(
            pybullet.GEOM_BOX, halfExtents=[half] * 3, rgbaColor=CUBE_RGBA
        )
        cube = client.createMultiBody(0.05, shape, visual, basePosition=DEFAULT_CUBE)
        client.changeDynamics(cube, -1, lateralFriction=1.0, spinningFriction=0.005)
        return cube

    # -- state ---------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        """Simulated seconds since the last :meth:`reset`."""
        return self._time

    def reset(self, qpos: np.ndarray) -> None:
        """Arm at Franka joint vector ``qpos [9]``, zero velocity, motors holding it; cube at its
        default spot and time 0."""
        qpos = _checked("qpos", qpos, 9)
        self._restore_state(self._initial_state)
        self._set_joints(self._client, self._robot, qpos[:7], qpos[7:])
        self._arm_target = qpos[:7].copy()
        self._finger_target = float(np.clip(qpos[7:].mean(), 0.0, 0.04))
        self._apply_motors()
        self.set_cube_pose(DEFAULT_CUBE)
        self._time = 0.0

    @staticmethod
    def _set_joints(client: BulletClient, robot: int, arm: np.ndarray, fingers: np.ndarray) -> None:
        for joint, angle in zip(ARM_JOINTS, arm, strict=True):
            client.resetJointState(robot, joint, float(angle), 0.0)
        for joint, position in zip(FINGER_JOINTS, fingers, strict=True):
            client.resetJointState(robot, joint, float(position), 0.0)

    def _apply_motors(self) -> None:
        """Send the stored arm set-points and the finger command to the position motors."""
        self._client.setJointMotorControlArray(
            self._robot,
            ARM_JOINTS,
            pybullet.POSITION_CONTROL,
            targetPositions=self._arm_target.tolist(),
            forces=ARM_FORCES.tolist(),
        )
        self._apply_fingers()

    def _apply_fingers(self) -> None:
        """Finger motors: track the commanded width, or close with ``GRASP_FORCE`` while the
        hand holds the cube (``sim.hand.holds``)."""
        measured = float(self.qpos()[7:].sum())
        if holds(2.0 * self._finger_target, measured, self._fingers_touch_cube()):
            target, force = 0.0, GRASP_FORCE
        else:
            target, force = self._finger_target, FINGER_FORCE
        self._client.setJointMotorControlArray(
            self._robot,
            FINGER_JOINTS,
            pybullet.POSITION_CONTROL,
            targetPositions=[target] * 2,
            forces=[force] * 2,
        )

    def _fingers_touch_cube(self) -> bool:
        """Both fingers within ``TOUCH_DISTANCE`` of the cube (a fresh distance query, so the
        answer depends on the current state only)."""
        return all(
            self._client.getClosestPoints(
                self._robot, self._cube, TOUCH_DISTANCE, linkIndexA=finger
            )
            for finger in FINGER_JOINTS
        )

    def qpos(self) -> np.ndarray:
        """Joint positions [9] (Franka convention for the arm, metres for the fingers)."""
        states = self._client.getJointStates(self._robot, ARM_JOINTS + FINGER_JOINTS)
        return np.array([state[0] for state in states], dtype=np.float64)

    @staticmethod
    def _tcp_pose(client: BulletClient, robot: int) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and rotation [3, 3] from the hand link frame."""
        link = client.getLinkState(robot, HAND_LINK, computeForwardKinematics=True)
        rotation = np.array(client.getMatrixFromQuaternion(link[5])).reshape(3, 3)
        return np.array(link[4]) + rotation[:, 2] * TCP_OFFSET, rotation

    def ee_state(self) -> np.ndarray:
        """TCP state [7]: position, extrinsic xyz Euler, gripper closedness."""
        position, rotation = self._tcp_pose(self._client, self._robot)
        euler = matrix_to_euler(torch.from_numpy(rotation)).numpy()
        width = float(self.qpos()[7:].sum())
        return np.concatenate([position, euler, [closedness_from_width(width)]])

    def fingertip_clearance(self) -> float:
        """Gap (m) between the fingers' lowest point and the table top (< 0: pressed in)."""
        return min(
            point[8]
            for finger in FINGER_JOINTS
            for point in self._client.getClosestPoints(
                self._robot, self._table, 1.0, linkIndexA=finger
            )
        )

    def cube_pose(self) -> np.ndarray:
        """Cube centre pose [7] = [x, y, z, qw, qx, qy, qz]."""
        position, (qx, qy, qz, qw) = self._client.getBasePositionAndOrientation(self._cube)
        return np.array([*position, qw, qx, qy, qz], dtype=np.float64)

    def set_cube_pose(self, position: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Teleport the cube to ``position [3]`` with ``quat [4]`` (wxyz, default upright)."""
        position = _checked("cube position", position, 3)
        quat = np.array([1.0, 0.0, 0.0, 0.0]) if quat is None else _checked("cube quat", quat, 4)
        qw, qx, qy, qz = quat / np.linalg.norm(quat)
        self._client.resetBasePositionAndOrientation(
            self._cube, position.tolist(), [qx, qy, qz, qw]
        )
        self._client.resetBaseVelocity(self._cube, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    # -- control -------------------------------------------------------------------------------

    def solve_ik(self, target: np.ndarray, arm: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Joint angles [7] putting the TCP at ``target [7]``'s pose, starting from ``arm [7]``.

        Damped least squares on ``calculateJacobian`` (in the robot-only IK client) with a
        null-space pull toward a rest posture.
        """
        client, robot = self._ik_client, self._ik_robot
        goal_rotation = _euler_to_matrix(target[3:6])
        damping = self.ik_damping**2 * np.eye(6)
        q = np.array(arm, dtype=np.float64)
        zeros = [0.0] * 9
        for _ in range(iterations):
            self._set_joints(client, robot, q, (0.04, 0.04))
            position, rotation = self._tcp_pose(client, robot)
            error = np.concatenate(
                [target[:3] - position, _rotation_error(goal_rotation, rotation)]
            )
            if np.linalg.norm(error[:3]) < 1e-4 and np.linalg.norm(error[3:]) < 1e-3:
                break
            linear, angular = client.calculateJacobian(
                robot, HAND_LINK, self._tcp_in_com.tolist(), [*q, 0.04, 0.04], zeros, zeros
            )
            jac = np.vstack([np.array(linear), np.array(angular)])[:, :7]
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping, error)
            null = np.eye(7) - np.linalg.pinv(jac) @ jac
            step += null @ (0.1 * (REST_QPOS - q))
            q = np.clip(q + np.clip(step, -0.2, 0.2), self._lower, self._upper)
        return q

    def move_ee(self, target: np.ndarray) -> None:
        """One control step: drive the arm along the joint path to the IK solution of ``target``.

        The joint set-points are ramped over the first half of the step (smooth, no jerk into the
        cube) and held for the rest so the arm settles.
        """
        target = _checked("target", target, 7)
        start = self._arm_target.copy()
        goal = self.solve_ik(target, self.qpos()[:7])
        self._finger_target = width_from_closedness(float(target[6])) / 2.0
        ramp = max(1, self.substeps // 2)
        for index in range(self.substeps):
            if index < ramp:
                self._arm_target = start + min(1.0, (index + 1) / ramp) * (goal - start)
                self._apply_motors()
            else:
                self._apply_fingers()
            self._client.stepSimulation()
        self._time += self.control_dt

    def place_ee(self, target: np.ndarray) -> float:
        """Teleport the arm to the IK solution of ``target [7]``; returns the position error (m)."""
        target = _checked("target", target, 7)
        arm = self.solve_ik(target, self.qpos()[:7], iterations=200)
        fingers = np.full(2, finger_joint_from_closedness(float(target[6])))
        self._set_joints(self._client, self._robot, arm, fingers)
        self._arm_target = arm
        self._finger_target = float(fingers[0])
        self._apply_motors()
        position, _ = self._tcp_pose(self._client, self._robot)
        return float(np.linalg.norm(position - target[:3]))

    # -- snapshot, rendering -------------------------------------------------------------------

    def snapshot(self) -> BulletSnapshot:
        """Saved physics state plus motor set-points and time; the saved state is removed from
        the client when the snapshot is garbage collected."""
        state_id = self._client.saveState()
        snapshot = BulletSnapshot(
            self._client, state_id, self._arm_target.copy(), self._finger_target, self._time
        )
        snapshot._finalizer = weakref.finalize(snapshot, _free_state, self._client, state_id)
        return snapshot

    def restore(self, snapshot: BulletSnapshot) -> None:
        """Put back a state from :meth:`snapshot` (it stays valid for further restores)."""
        if not isinstance(snapshot, BulletSnapshot) or snapshot.client is not self._client:
            raise ValueError("restore() needs a snapshot taken by this PybulletBackend instance")
        self._restore_state(snapshot.state_id)
        self._arm_target = snapshot.arm_target.copy()
        self._finger_target = snapshot.finger_target
        self._time = snapshot.time
        self._apply_motors()

    def _restore_state(self, state_id: int) -> None:
        """``restoreState`` after dropping every contact manifold, which it would otherwise keep
        (warm-starting the next step from the abandoned history): the bodies are parked far
        apart, collision detection runs once, then the saved state puts them back."""
        for index, body in enumerate((self._robot, self._cube)):
            self._client.resetBasePositionAndOrientation(
                body, [50.0 * (index + 1), 0, 0], [0, 0, 0, 1]
            )
        self._client.performCollisionDetection()
        self._client.restoreState(stateId=state_id)
        self._client.resetBasePositionAndOrientation(self._robot, *self._robot_base)

    def render(self) -> np.ndarray:
        """RGB uint8 [image_size, image_size, 3] from the exterior camera (CPU tiny renderer)."""
        size = self.image_size
        _, _, rgba, depth, _ = self._client.getCameraImage(
            size,
            size,
            viewMatrix=self._view,
            projectionMatrix=self._projection,
            renderer=pybullet.ER_TINY_RENDERER,
            flags=pybullet.ER_NO_SEGMENTATION_MASK,
            lightDirection=[0.6, -0.6, 2.0],
        )
        image = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()
        # Nothing hit (depth at the far plane): MuJoCo's grey backdrop instead of white.
        image[np.asarray(depth).reshape(size, size) > 0.9999] = BACKGROUND_RGB
        return image

    def close(self) -> None:
        """Disconnect both physics clients (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        for client in (self._client, self._ik_client):
            if client.isConnected():
                client.disconnect()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn pybullet down
            pass
