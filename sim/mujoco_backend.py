"""MuJoCo implementation of :class:`sim.backend.Backend`: the Panda of ``sim.scene`` driven by
differential IK (damped least squares on ``mj_jacSite``) into its joint position servos, and a
``mujoco.Renderer`` on the fixed exterior camera (headless, ``MUJOCO_GL=egl`` unless set).
"""

from __future__ import annotations

import atexit
import os
import weakref

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robots.franka import JOINT_LOWER, JOINT_UPPER, euler_to_matrix, matrix_to_euler  # noqa: E402
from sim.backend import (  # noqa: E402
    CONTROL_DT,
    closedness_from_width,
    finger_joint_from_closedness,
)
from sim.hand import GRASP_FORCE, TOUCH_DISTANCE, holds, width_from_closedness  # noqa: E402
from sim.scene import check_cameras, scene_xml  # noqa: E402

ARM_JOINTS = tuple(f"robot:panda0_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")
FINGER_BODIES = ("panda0_leftfinger", "panda0_rightfinger")
# The gymnasium_robotics Panda measures joints 6 and 7 from other zeros than Franka's datasheet
# (and robots.franka); model angle = Franka angle + offset.
JOINT_OFFSET = np.array([0.0, 0.0, 0.0, 0.0, 0.0, -np.pi / 2, -np.pi / 4])
FINGER_KP = 500.0  # N/m, the finger position servos' gain (gymnasium_robotics' actuator.xml)
SERVO_STIFFNESS = (2000.0, 2000.0, 2000.0, 2000.0, 300.0, 300.0, 300.0)  # N m / rad
# Posture the IK null space pulls toward (model angles).
REST_QPOS = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]) + JOINT_OFFSET
_LIVE: weakref.WeakSet[MujocoBackend] = weakref.WeakSet()


def _euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    return euler_to_matrix(torch.as_tensor(euler, dtype=torch.float64)).numpy()


def _rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vector [3] taking rotation ``current`` to ``target`` (3x3 each)."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    error = np.empty(3)
    mujoco.mju_quat2Vel(error, quat, 1.0)
    return error


class MujocoBackend:
    """Franka table-top scene in MuJoCo (see ``sim.backend`` for the contract)."""

    def __init__(
        self,
        image_size: int = 256,
        control_dt: float = CONTROL_DT,
        ik_damping: float = 0.05,
        cameras: tuple[str, ...] | str = ("exterior",),
    ) -> None:
        self.image_size = int(image_size)
        self.cameras = check_cameras(cameras)
        self.model = mujoco.MjModel.from_xml_string(scene_xml(offscreen=self.image_size))
        self.data = mujoco.MjData(self.model)
        self._ik_data = mujoco.MjData(self.model)  # scratch copy for kinematic IK
        self.substeps = max(1, round(control_dt / self.model.opt.timestep))
        self.control_dt = self.substeps * self.model.opt.timestep
        self.ik_damping = ik_damping
        model = self.model
        self._arm_qadr = np.array([model.joint(n).qposadr[0] for n in ARM_JOINTS])
        self._arm_dadr = np.array([model.joint(n).dofadr[0] for n in ARM_JOINTS])
        self._finger_qadr = np.array([model.joint(n).qposadr[0] for n in FINGER_JOINTS])
        self._cube_qadr = model.joint("cube_joint").qposadr[0]
        self._cube_dadr = model.joint("cube_joint").dofadr[0]
        self._tcp = model.site("tcp").id
        # Franka's datasheet limits, in model angles, for joints and their position servos.
        lower = np.array(JOINT_LOWER) + JOINT_OFFSET
        upper = np.array(JOINT_UPPER) + JOINT_OFFSET
        for index, name in enumerate(ARM_JOINTS):
            model.jnt_range[model.joint(name).id] = (lower[index], upper[index])
            model.actuator_ctrlrange[index] = (lower[index], upper[index])
        self._lower, self._upper = lower, upper
        # Stiffer joint servos than the kitchen model's, like Franka's own joint impedance loop:
        # the TCP then lands within ~2 mm of each 5 cm step's target.
        for index, stiffness in enumerate(SERVO_STIFFNESS):
            model.actuator_gainprm[index, 0] = stiffness
            model.actuator_biasprm[index, 1] = -stiffness
        model.dof_damping[self._finger_dadr()] = 20.0
        model.dof_armature[self._finger_dadr()] = 0.1
        self._setup_grasp_sensing()
        self._renderer: mujoco.Renderer | None = None
        self._camera_ids = [model.camera(name).id for name in self.cameras]
        _LIVE.add(self)

    def _finger_dadr(self) -> np.ndarray:
        return np.array([self.model.joint(n).dofadr[0] for n in FINGER_JOINTS])

    def _setup_grasp_sensing(self) -> None:
        """Finger servos that can squeeze (set-points below the joint range) and finger-cube gaps
        up to ``TOUCH_DISTANCE`` listed as contacts (``gap`` keeps them out of the solver)."""
        model = self.model
        model.actuator_gainprm[7:9, 0] = FINGER_KP
        model.actuator_biasprm[7:9, 1] = -FINGER_KP
        model.actuator_ctrlrange[7:9] = (-0.04, 0.04)
        self._geom_body = model.geom_bodyid.copy()
        self._finger_bodies = [model.body(name).id for name in FINGER_BODIES]
        self._cube_body = model.body("cube").id
        fingers = np.isin(self._geom_body, self._finger_bodies)
        model.geom_margin[fingers] = TOUCH_DISTANCE
        model.geom_gap[fingers] = TOUCH_DISTANCE
        self._finger_geoms = np.flatnonzero(fingers & (model.geom_contype > 0))
        self._table_geom = model.geom("table").id

    # -- state ---------------------------------------------------------------------------------

    def reset(self, qpos: np.ndarray) -> None:
        """Arm at Franka joint vector ``qpos [9]``, zero velocity, servos holding it."""
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape != (9,):
            raise ValueError(f"qpos must have shape (9,), got {qpos.shape}")
        mujoco.mj_resetData(self.model, self.data)
        self._set_joints(self.data, qpos[:7] + JOINT_OFFSET, qpos[7:])
        mujoco.mj_forward(self.model, self.data)

    def _set_joints(self, data: mujoco.MjData, arm: np.ndarray, fingers: np.ndarray) -> None:
        data.qpos[self._arm_qadr] = arm
        data.qpos[self._finger_qadr] = fingers
        data.qvel[self._arm_dadr] = 0.0
        data.qvel[self._finger_dadr()] = 0.0
        data.ctrl[:7] = arm
        data.ctrl[7:9] = fingers

    def qpos(self) -> np.ndarray:
        """Joint positions [9] (Franka convention for the arm, metres for the fingers)."""
        arm = self.data.qpos[self._arm_qadr] - JOINT_OFFSET
        return np.concatenate([arm, self.data.qpos[self._finger_qadr]])

    def ee_state(self) -> np.ndarray:
        """TCP state [7]: position, extrinsic xyz Euler, gripper closedness."""
        rotation = self.data.site_xmat[self._tcp].reshape(3, 3)
        euler = matrix_to_euler(torch.from_numpy(rotation.copy())).numpy()
        width = float(self.data.qpos[self._finger_qadr].sum())
        return np.concatenate(
            [self.data.site_xpos[self._tcp], euler, [closedness_from_width(width)]]
        )

    def fingertip_clearance(self) -> float:
        """Gap (m) between the fingers' lowest point and the table top (< 0: pressed in)."""
        fromto = np.zeros(6)
        return min(
            mujoco.mj_geomDistance(self.model, self.data, geom, self._table_geom, 1.0, fromto)
            for geom in self._finger_geoms
        )

    def cube_pose(self) -> np.ndarray:
        """Cube centre pose [7] = [x, y, z, qw, qx, qy, qz]."""
        return self.data.qpos[self._cube_qadr : self._cube_qadr + 7].copy()

    def set_cube_pose(self, position: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Teleport the cube to ``position [3]`` with orientation ``quat [4]`` (wxyz; upright)."""
        quat = np.array([1.0, 0.0, 0.0, 0.0]) if quat is None else np.asarray(quat, float)
        self.data.qpos[self._cube_qadr : self._cube_qadr + 3] = position
        self.data.qpos[self._cube_qadr + 3 : self._cube_qadr + 7] = quat / np.linalg.norm(quat)
        self.data.qvel[self._cube_dadr : self._cube_dadr + 6] = 0.0
        mujoco.mj_forward(self.model, self.data)

    # -- control -------------------------------------------------------------------------------

    def solve_ik(self, target: np.ndarray, arm: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Model joint angles [7] putting the TCP at ``target [7]``'s pose, starting from ``arm``.

        Damped least squares on ``mj_jacSite`` with a null-space pull toward a rest posture.
        """
        data, model = self._ik_data, self.model
        goal_rotation = _euler_to_matrix(target[3:6])
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        q = np.array(arm, dtype=np.float64)
        damping = self.ik_damping**2 * np.eye(6)
        for _ in range(iterations):
            data.qpos[self._arm_qadr] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            rotation = data.site_xmat[self._tcp].reshape(3, 3)
            error = np.concatenate(
                [target[:3] - data.site_xpos[self._tcp], _rotation_error(goal_rotation, rotation)]
            )
            if np.linalg.norm(error[:3]) < 1e-4 and np.linalg.norm(error[3:]) < 1e-3:
                break
            mujoco.mj_jacSite(model, data, jacp, jacr, self._tcp)
            jac = np.vstack([jacp, jacr])[:, self._arm_dadr]
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping, error)
            null = np.eye(7) - np.linalg.pinv(jac) @ jac
            step += null @ (0.1 * (REST_QPOS - q))
            q = np.clip(q + np.clip(step, -0.2, 0.2), self._lower, self._upper)
        return q

    def _fingers_touch_cube(self) -> bool:
        """Both fingers within ``TOUCH_DISTANCE`` of the cube (contacts of the last collision
        pass)."""
        pairs = self._geom_body[self.data.contact.geom[: self.data.ncon]]  # [ncon, 2]
        with_cube = pairs[(pairs == self._cube_body).any(axis=1)]
        return all(bool((with_cube == body).any()) for body in self._finger_bodies)

    def _finger_ctrl(self, command_width: float) -> np.ndarray:
        """Finger set-points [2]: the commanded width, or a ``GRASP_FORCE`` squeeze while the
        hand holds the cube (``sim.hand.holds``)."""
        measured = self.data.qpos[self._finger_qadr]
        if holds(command_width, float(measured.sum()), self._fingers_touch_cube()):
            return measured - GRASP_FORCE / FINGER_KP
        return np.full(2, command_width / 2.0)

    def move_ee(self, target: np.ndarray) -> None:
        """One control step: servo the arm along the joint path to the IK solution of ``target``.

        The joint set-points are ramped over the first half of the step (smooth, no jerk into the
        cube) and held for the rest so the arm settles.
        """
        target = np.asarray(target, dtype=np.float64)
        start = self.data.ctrl[:7].copy()
        goal = self.solve_ik(target, self.data.qpos[self._arm_qadr])
        command_width = width_from_closedness(float(target[6]))
        ramp = max(1, self.substeps // 2)
        for index in range(self.substeps):
            fraction = min(1.0, (index + 1) / ramp)
            self.data.ctrl[:7] = start + fraction * (goal - start)
            # Collision first, so the grasp rule sees this instant's finger-cube contacts.
            mujoco.mj_step1(self.model, self.data)
            self.data.ctrl[7:9] = self._finger_ctrl(command_width)
            mujoco.mj_step2(self.model, self.data)
        # TCP, contacts and camera at the final state, exactly as after restore().
        mujoco.mj_forward(self.model, self.data)

    def place_ee(self, target: np.ndarray) -> float:
        """Teleport the arm to the IK solution of ``target [7]``; returns the position error (m)."""
        target = np.asarray(target, dtype=np.float64)
        arm = self.solve_ik(target, self.data.qpos[self._arm_qadr], iterations=200)
        fingers = np.full(2, finger_joint_from_closedness(float(target[6])))
        self._set_joints(self.data, arm, fingers)
        mujoco.mj_forward(self.model, self.data)
        return float(np.linalg.norm(self.data.site_xpos[self._tcp] - target[:3]))

    # -- snapshot, rendering -------------------------------------------------------------------

    def snapshot(self) -> np.ndarray:
        """Full integration state (time, qpos, qvel, act, warm start, ctrl, applied forces)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return state

    def restore(self, snapshot: np.ndarray) -> None:
        """Put back a state from :meth:`snapshot`."""
        mujoco.mj_setState(self.model, self.data, snapshot, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)

    def render(self) -> np.ndarray:
        """RGB uint8 [image_size, image_size x len(cameras), 3]: each camera's square view, side
        by side in the order of ``cameras`` (the exterior camera alone by default)."""
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.image_size, self.image_size)
            # Registered after the GL display exists, so it runs before the display's teardown.
            atexit.unregister(_close_all)
            atexit.register(_close_all)
        views = []
        for camera in self._camera_ids:
            self._renderer.update_scene(self.data, camera=camera)
            views.append(self._renderer.render().copy())
        return views[0] if len(views) == 1 else np.concatenate(views, axis=1)

    def close(self) -> None:
        """Free the renderer's GL context (safe to call twice)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown may have torn down GL already
            pass


def _close_all() -> None:
    """Free live renderers before interpreter teardown (EGL errors otherwise)."""
    for backend in list(_LIVE):
        backend.close()
