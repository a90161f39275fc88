"""What the planner says about image sizes before the world model crops and resizes them
(``world_model.encoder.preprocess_images``: centre square crop, then a resize to the model's
``img_size``), so that no image is stretched or shrunk without a word:

- a goal whose aspect ratio differs from the camera image's is refused (``PlanInputError``):
  the two centre crops would show different parts of the scene, and the energy compares them;
- a camera image that is not square is said once (its sides are cut off);
- a goal at another size than the camera image, or images at another size than the model's
  input, are said once (``ImageResizeWarning``), with how to avoid the resize.

Models that do not look at pixels (the ground-truth-state model) skip all of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable

from planner.inputs import PlanInputError
from world_model.errors import ImageResizeWarning

ASPECT_TOLERANCE = 0.02  # relative difference of height/width ratios still called the same


class ImageSizes:
    """Checks the (camera, goal) image shapes of each plan against each other and against the
    model's input side; each warning is given once per planner and cause."""

    def __init__(self, model_side: int | None, views: int = 1) -> None:
        """``model_side``: the world model's input side (``config.img_size``), None when it does
        not look at pixels; ``views``: camera views side by side in each image it takes."""
        self.model_side = model_side
        self.views = views
        self._said: set[Hashable] = set()

    def check(self, image_shape: tuple[int, ...], goal_shape: tuple[int, ...]) -> None:
        """Refuse or note the images of one plan (shapes ``[H, W, 3]``, already checked).

        Raises:
            PlanInputError: the goal's aspect ratio is not the camera image's.
        """
        if self.model_side is None:
            return
        (height, width), (goal_height, goal_width) = image_shape[:2], goal_shape[:2]
        if self.views > 1:
            for name, (h, w) in (("camera", (height, width)), ("goal", (goal_height, goal_width))):
                if w != self.views * h:
                    raise PlanInputError(
                        f"the {name} image is {h}x{w}, but the world model takes {self.views} "
                        f"square camera views side by side ({h}x{self.views * h}; in the sim: "
                        "sim.make(..., cameras='exterior,wrist'))"
                    )
            width, goal_width = width // self.views, goal_width // self.views
        if abs(height * goal_width - goal_height * width) > ASPECT_TOLERANCE * height * goal_width:
            raise PlanInputError(
                f"the goal image is {goal_height}x{goal_width} but the camera image is "
                f"{height}x{width}: a goal must have the camera's aspect ratio (the model "
                "compares their centre squares, which would show different parts of the "
                "scene); capture or render the goal with the same camera"
            )
        side, model = min(height, width), self.model_side
        if height != width:
            self._once(
                ("crop", height, width),
                f"the camera image is {height}x{width}, not square: the world model sees its "
                f"centre {side}x{side} square (resized to {model}x{model}); the sides are cut off",
            )
        if (height, width) != (goal_height, goal_width):
            self._once(
                ("goal", height, width, goal_height, goal_width),
                f"the goal image is {goal_height}x{goal_width} but the camera image is "
                f"{height}x{width}: both are resized to the model's {model}x{model}, the goal "
                f"{_factor(min(goal_height, goal_width), model)}; give the goal at the camera's "
                "size",
            )
        if side != model:
            self._once(
                ("size", height, width),
                f"the camera image is {height}x{width} and the world model takes "
                f"{model}x{model}: each image is resized ({_factor(side, model)}) on every plan; "
                f"capture or render at {model} px (sim.make(..., image_size={model}))",
            )

    def _once(self, cause: Hashable, message: str) -> None:
        if cause not in self._said:
            self._said.add(cause)
            warnings.warn(message, ImageResizeWarning, stacklevel=4)


def _factor(side: int, model: int) -> str:
    """'2x up' / '1.5x down' / 'as is' for a side resized to ``model``."""
    if side == model:
        return "as is"
    return f"{model / side:.3g}x up" if side < model else f"{side / model:.3g}x down"
