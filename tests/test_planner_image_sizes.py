"""No silent resizing: a goal of another aspect than the camera image is refused; images that
the world model crops or resizes are said once per planner (``ImageResizeWarning``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import world_model
from planner import PlanInputError, Planner
from world_model.errors import ImageResizeWarning
from world_model.state_model import StateWorldModel

SMALL = ["actor.samples=8", "actor.iterations=1", "actor.elites=2"]
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)


@pytest.fixture(scope="module")
def model():
    return world_model.build("tiny", seed=0)  # a 64 px model


def image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 1000 + width).integers(
        0, 256, (height, width, 3), dtype=np.uint8
    )


def plan_and_warnings(planner: Planner, camera: np.ndarray, goal: np.ndarray) -> list[str]:
    """Plan once; the ImageResizeWarning messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        planner.plan({"image": camera, "state": START}, goal)
    return [str(w.message) for w in caught if issubclass(w.category, ImageResizeWarning)]


def test_a_goal_of_another_aspect_is_refused_before_encoding(model):
    planner = Planner.from_config("icem", model, "cpu", SMALL)
    with pytest.raises(PlanInputError) as error:
        planner.plan({"image": image(64, 64), "state": START}, image(64, 200))
    message = str(error.value)
    assert "goal image is 64x200 but the camera image is 64x64" in message
    assert "aspect ratio" in message and planner.cache_misses == 0


def test_an_undersized_goal_is_said_once(model):
    planner = Planner.from_config("icem", model, "cpu", SMALL)
    said = plan_and_warnings(planner, image(64, 64), image(8, 8))
    assert said == [
        "the goal image is 8x8 but the camera image is 64x64: both are resized to the "
        "model's 64x64, the goal 8x up; give the goal at the camera's size"
    ]
    assert plan_and_warnings(planner, image(64, 64), image(8, 8)) == []  # once
    assert plan_and_warnings(planner, image(64, 64), image(64, 64)) == []  # nothing to say


def test_a_camera_off_the_models_size_or_not_square_is_said_once(model):
    planner = Planner.from_config("icem", model, "cpu", SMALL)
    said = plan_and_warnings(planner, image(96, 128), image(96, 128))
    assert len(said) == 2
    assert said[0].startswith("the camera image is 96x128, not square: the world model sees")
    assert "centre 96x96 square" in said[0]
    assert "resized (1.5x down) on every plan; capture or render at 64 px" in said[1]
    assert plan_and_warnings(planner, image(96, 128), image(96, 128)) == []


def test_a_model_that_sees_no_pixels_takes_any_images():
    planner = Planner.from_config("icem", StateWorldModel(), "cpu", SMALL)
    goal = {"image": image(64, 200), "state": START}
    assert plan_and_warnings(planner, image(8, 8), goal) == []
