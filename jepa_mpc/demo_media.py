"""The demo's pictures: the episode GIF (each camera frame with the reach target marked, a view
from above with the target as a green sphere, and the goal image, each panel labelled) and the
energy/distance plot. Markers are drawn on the saved pictures only: the planner sees the camera
images unmarked.

From the fixed camera a reach is mostly a move in depth (toward or away from the lens), so the
hand seems to stay put; the view from above shows it travel to the target."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sim.scene import project_to_camera
from world_model.files import atomic_write, pyplot, save_figure

PANEL_MIN_SIDE = 256  # small model images are enlarged (nearest) to at least this for viewing
CAPTION_HEIGHT = 22
TARGET_RGB = (40, 230, 60)
OUTLINE_RGB = (0, 0, 0)
GAP = 4  # white pixels between two panels
TARGET_SPHERE_RADIUS = 0.02  # metres
# The view from above: a free MuJoCo camera over the workspace, looking down and forward.
ABOVE_LOOKAT = (0.40, 0.05, 0.12)
ABOVE_DISTANCE, ABOVE_AZIMUTH, ABOVE_ELEVATION = 1.2, 180.0, -55.0


class AboveView:
    """Renders the MuJoCo scene from above with the target as a translucent green sphere
    (display only: a renderer of its own, the env's camera is untouched)."""

    def __init__(self, backend, target: np.ndarray, side: int = PANEL_MIN_SIDE) -> None:
        """``backend``: a ``sim.mujoco_backend.MujocoBackend``; ``target`` [3] metres."""
        import mujoco

        self._mujoco = mujoco
        self.backend = backend
        self.target = np.asarray(target, dtype=np.float64)
        self.renderer = mujoco.Renderer(backend.model, side, side)
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = ABOVE_LOOKAT
        self.camera.distance = ABOVE_DISTANCE
        self.camera.azimuth, self.camera.elevation = ABOVE_AZIMUTH, ABOVE_ELEVATION

    def render(self) -> np.ndarray:
        """uint8 [side, side, 3] of the scene as it is now, the target drawn in: a sphere, a
        thin drop line to the table and a disc on the table below it."""
        self.renderer.update_scene(self.backend.data, camera=self.camera)
        x, y, z = self.target
        colour = np.array([*(c / 255 for c in TARGET_RGB), 0.75], np.float32)
        cylinder = self._mujoco.mjtGeom.mjGEOM_CYLINDER
        self._add(
            self._mujoco.mjtGeom.mjGEOM_SPHERE, (TARGET_SPHERE_RADIUS, 0, 0), (x, y, z), colour
        )
        self._add(cylinder, (0.003, max(z, 0.0) / 2, 0), (x, y, max(z, 0.0) / 2), colour)
        self._add(cylinder, (1.5 * TARGET_SPHERE_RADIUS, 0.001, 0), (x, y, 0.001), colour)
        return self.renderer.render().copy()

    def _add(self, kind, size, position, rgba: np.ndarray) -> None:
        """Append one upright geom to the renderer's scene (skipped when the scene is full)."""
        scene = self.renderer.scene
        if scene.ngeom >= scene.maxgeom:
            return
        self._mujoco.mjv_initGeom(
            scene.geoms[scene.ngeom],
            kind,
            np.asarray(size, np.float64),
            np.asarray(position, np.float64),
            np.eye(3).ravel(),
            rgba,
        )
        scene.ngeom += 1

    def close(self) -> None:
        """Free the renderer (safe to call twice)."""
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def above_view(env, target: np.ndarray) -> AboveView | None:
    """An ``AboveView`` of ``env``'s scene (None for a backend other than MuJoCo)."""
    backend = env.unwrapped.backend
    if not hasattr(backend, "data") or not hasattr(backend, "model"):
        return None
    return AboveView(backend, target)


def panel_scale(image_side: int) -> int:
    """Integer enlargement that brings an ``image_side`` image to ``PANEL_MIN_SIDE`` or more."""
    return max(1, math.ceil(PANEL_MIN_SIDE / image_side))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_target(image: Image.Image, centre: tuple[float, float], radius: float) -> None:
    """A ring with four ticks (a gun sight) around ``centre`` (pixels of ``image``), green on a
    black outline so that it shows on the table, the arm and the sky alike."""
    draw = ImageDraw.Draw(image)
    x, y = centre
    for colour, width in ((OUTLINE_RGB, 5), (TARGET_RGB, 2)):
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=width)
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            inner, outer = radius * 0.45, radius * 1.5
            line = (x + dx * inner, y + dy * inner, x + dx * outer, y + dy * outer)
            draw.line(line, fill=colour, width=width)


def labelled_panel(
    image: np.ndarray, caption: str, target: tuple[float, float] | None
) -> np.ndarray:
    """``image`` uint8 [S, S, 3] enlarged by ``panel_scale``, the target marked at ``target``
    (pixels of ``image``; None or off-image: not drawn), under a caption strip.

    Returns:
        uint8 [CAPTION_HEIGHT + S * k, S * k, 3].
    """
    scale = panel_scale(image.shape[1])
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    panel = Image.new("RGB", (big.shape[1], CAPTION_HEIGHT + big.shape[0]), (32, 32, 36))
    panel.paste(Image.fromarray(big), (0, CAPTION_HEIGHT))
    if target is not None and np.all(np.isfinite(target)):
        centre = (target[0] * scale, CAPTION_HEIGHT + target[1] * scale)
        draw_target(panel, centre, radius=0.045 * big.shape[1])
    ImageDraw.Draw(panel).text((6, 3), caption, fill=(255, 255, 255), font=_font(14))
    return np.asarray(panel)


def episode_frame(
    frame: np.ndarray,
    goal: np.ndarray,
    target: tuple[float, float] | None,
    caption: str,
    above: np.ndarray | None = None,
) -> np.ndarray:
    """One GIF frame: the camera panel (captioned ``caption``, target marked) | the view from
    above (when given) | the goal panel, all of one height."""
    panels = [labelled_panel(frame, caption, target)]
    if above is not None:
        panels.append(labelled_panel(above, "view from above (target: green sphere)", None))
    panels.append(labelled_panel(goal, "goal image (target: green ring)", target))
    height = max(panel.shape[0] for panel in panels)
    gap = np.full((height, GAP, 3), 255, np.uint8)
    row = []
    for panel in panels:
        pad = np.full((height - panel.shape[0], panel.shape[1], 3), 255, np.uint8)
        row += [np.concatenate((panel, pad), axis=0), gap]
    return np.concatenate(row[:-1], axis=1)


def target_in_image(goal_position: np.ndarray, image_side: int) -> tuple[float, float]:
    """Where the goal's TCP position [3] (metres, base frame) appears in the camera image."""
    column, row = project_to_camera(goal_position, image_side)[0]
    return float(column), float(row)


def write_gif(
    path: Path,
    frames: list[np.ndarray],
    goal: np.ndarray,
    goal_position: np.ndarray,
    captions: list[str],
    fps: float,
    above: list[np.ndarray] | None = None,
) -> None:
    """The episode as an animated GIF, atomically: frames [H, W, 3] with the target (the goal's
    TCP position [3]) marked and ``captions`` (one per frame), each beside its view from above
    (``above``, one per frame, optional) and the goal image."""
    import imageio.v2 as imageio

    target = target_in_image(goal_position, frames[0].shape[0])  # the exterior view's side
    views = above if above else [None] * len(frames)
    pictures = [
        episode_frame(frame, goal, target, caption, view)
        for frame, caption, view in zip(frames, captions, views, strict=True)
    ]
    atomic_write(
        path,
        lambda temp: imageio.mimwrite(temp, pictures, format="gif", duration=1000.0 / fps, loop=0),
    )


def write_plot(
    path: Path, energy: list[float], distance: list[float], threshold: float, title: str
) -> None:
    """``energy_figure`` as a PNG, atomically."""
    save_figure(energy_figure(energy, distance, threshold, title), path, dpi=100)


def energy_figure(energy: list[float], distance: list[float], threshold: float, title: str):
    """A matplotlib figure: L1 energy to the goal latent (left axis) and the TCP's distance to
    the target (right axis) over the control steps, the task's success threshold as a labelled
    dotted line, a legend and ``title``."""
    figure, left = pyplot().subplots(figsize=(7, 4))
    steps = np.arange(len(energy))
    lines = left.plot(steps, energy, "o-", color="tab:blue", label="energy (L1 to goal latent)")
    left.set_xlabel("control step")
    left.set_ylabel("energy", color="tab:blue")
    right = left.twinx()
    lines += right.plot(steps, distance, "s-", color="tab:red", label="TCP distance to target")
    lines.append(
        right.axhline(
            threshold,
            color="tab:red",
            linestyle=":",
            linewidth=1.2,
            label=f"success threshold ({100 * threshold:g} cm)",
        )
    )
    right.set_ylabel("distance to target (m)", color="tab:red")
    right.set_ylim(bottom=0)
    left.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    left.set_title(title, fontsize=10)
    left.grid(alpha=0.3)
    figure.tight_layout()
    return figure
