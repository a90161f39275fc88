"""Fuzzing ``Planner.plan``'s public inputs with hypothesis: every malformed observation or goal
(wrong type, shape, dtype, channel count, NaN/inf, empty, huge) raises ``PlanInputError`` naming
the problem and leaves the planner as it was; odd but legal inputs (other image sizes, torch
tensors, integer or float64 states, any strides) plan. Images larger than ``MAX_IMAGE_SIDE``
per side are rejected by shape alone, before the pixels are read."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import world_model
from planner import PlanInputError, Planner
from planner.inputs import MAX_IMAGE_SIDE, MAX_POSITION_M, MIN_IMAGE_SIDE
from world_model.errors import ImageResizeWarning
from world_model.state_model import StateWorldModel

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
IMAGE = np.zeros((32, 32, 3), np.uint8)
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
GOAL = {"image": IMAGE, "state": START + np.array([0.03, 0.02, -0.01, 0, 0, 0, 0], np.float32)}
SMALL = ["actor.samples=16", "actor.elites=4", "actor.iterations=2"]


@pytest.fixture(scope="module")
def state_planner() -> Planner:
    """A fast planner on the ground-truth-state model (it ignores the pixels)."""
    model = StateWorldModel(num_patches=4, latent_dim=8, seed=0)
    return Planner.from_config("cem_release", world_model=model, device="cpu", overrides=SMALL)


@pytest.fixture(scope="module")
def pixel_planner() -> Planner:
    """A planner on the untrained tiny V-JEPA model: it really crops and resizes the pixels."""
    model = world_model.build("tiny", device="cpu", seed=0)
    return Planner.from_config("cem_release", world_model=model, device="cpu", overrides=SMALL)


def rejects(planner: Planner, obs, goal, *fragments: str) -> str:
    """Assert ``plan`` raises PlanInputError whose message holds every fragment; return it."""
    with pytest.raises(PlanInputError) as caught:
        planner.plan(obs, goal)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# -- strategies ---------------------------------------------------------------------------------

BAD_IMAGE_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int64, np.uint16]
bad_image_dtype = st.sampled_from([*BAD_IMAGE_DTYPES, np.bool_])
side = st.integers(MIN_IMAGE_SIDE, 48)
special = st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1.0, 0.5])


@st.composite
def wrong_dtype_images(draw) -> np.ndarray | torch.Tensor:
    """An HWC 3-channel image with a dtype other than uint8, possibly holding NaN/inf."""
    dtype = draw(bad_image_dtype)
    image = np.zeros((draw(side), draw(side), 3), dtype)
    if np.issubdtype(dtype, np.floating):
        image[0, 0, 0] = draw(special)
    return torch.from_numpy(image) if draw(st.booleans()) else image


@st.composite
def wrong_shape_images(draw) -> np.ndarray:
    """uint8 arrays that are not [H, W, 3]: other ranks, other channel counts, empty."""
    kind = draw(st.sampled_from(["rank", "channels", "empty"]))
    if kind == "rank":
        rank = draw(st.sampled_from([0, 1, 2, 4, 5]))
        return np.zeros(draw(st.lists(st.integers(1, 12), min_size=rank, max_size=rank)), np.uint8)
    if kind == "channels":
        channels = draw(st.integers(0, 8).filter(lambda c: c != 3))
        return np.zeros((draw(side), draw(side), channels), np.uint8)
    return np.zeros((0,), np.uint8)


@st.composite
def wrong_size_images(draw) -> np.ndarray:
    """[H, W, 3] uint8 with a side below the minimum or above the maximum (huge ones are
    zero-stride broadcast views: the check must reject them by shape without touching pixels)."""
    small = st.integers(0, MIN_IMAGE_SIDE - 1)
    huge = st.integers(MAX_IMAGE_SIDE + 1, 40_000)
    height, width = draw(
        st.one_of(
            st.tuples(small, side),
            st.tuples(side, small),
            st.tuples(huge, side),
            st.tuples(side, huge),
            st.tuples(huge, huge),
        )
    )
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (height, width, 3))


not_an_array = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.lists(st.integers(0, 255), max_size=5),
    st.just({"pixels": IMAGE}),
)


@st.composite
def bad_states(draw) -> tuple[object, str]:
    """(malformed state, a fragment the error message must contain)."""
    kind = draw(st.sampled_from(["length", "nonfinite", "dtype", "type", "units", "float32"]))
    if kind == "length":
        length = draw(st.integers(0, 20).filter(lambda n: n != 7))
        return np.zeros(length, np.float32), "7 entries"
    if kind == "nonfinite":
        state = START.astype(np.float64)
        state[draw(st.integers(0, 6))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        as_torch = draw(st.booleans())
        return (torch.from_numpy(state) if as_torch else state.tolist()), "NaN or inf"
    if kind == "dtype":
        state = draw(st.sampled_from([START.astype(bool), START.astype(complex)]))
        return (torch.from_numpy(state) if draw(st.booleans()) else state), "ints or floats"
    if kind == "type":
        return draw(st.sampled_from(["up", ["x"] * 7, [1.0, [2.0, 3.0]], {"x": 1.0}])), "numbers"
    if kind == "units":  # a millimetre reading
        state = START.astype(np.float64)
        state[draw(st.integers(0, 2))] = draw(st.floats(MAX_POSITION_M * 1.01, 1e300))
        return state, "metres"
    state = START.astype(np.float64)
    state[draw(st.integers(3, 6))] = draw(st.floats(1e39, 1e300))
    return state, "float32"


# -- malformed observations ---------------------------------------------------------------------


@given(image=wrong_dtype_images())
@FUZZ
def test_images_of_the_wrong_dtype_are_rejected(state_planner, image):
    rejects(state_planner, {"image": image, "state": START}, GOAL, "obs['image']", "uint8")
    rejects(state_planner, {"image": IMAGE, "state": START}, image, "goal", "uint8")


@given(image=wrong_shape_images())
@FUZZ
def test_images_of_the_wrong_shape_are_rejected(state_planner, image):
    rejects(state_planner, {"image": image, "state": START}, GOAL, "obs['image']", "[H, W, 3]")
    rejects(state_planner, {"image": IMAGE, "state": START}, {"image": image}, "goal['image']")


@given(image=wrong_size_images())
@FUZZ
def test_images_too_small_or_too_large_are_rejected_by_shape(state_planner, image):
    rejects(state_planner, {"image": image, "state": START}, GOAL, "pixels", str(MAX_IMAGE_SIDE))


@given(image=not_an_array)
@FUZZ
def test_images_that_are_not_arrays_are_rejected(state_planner, image):
    rejects(state_planner, {"image": image, "state": START}, GOAL, "obs['image']", "uint8 array")


@given(case=bad_states())
@FUZZ
def test_malformed_states_are_rejected(state_planner, case):
    state, fragment = case
    rejects(state_planner, {"image": IMAGE, "state": state}, GOAL, "obs['state']", fragment)
    goal = {"image": IMAGE, "state": state}
    rejects(state_planner, {"image": IMAGE, "state": START}, goal, "goal['state']", fragment)


@given(
    obs=st.one_of(
        not_an_array,
        st.just(IMAGE),
        st.just([IMAGE, START]),
        st.just((IMAGE, START)),
        st.fixed_dictionaries({"state": st.just(START)}),
        st.fixed_dictionaries({"image": st.just(IMAGE)}),
        st.fixed_dictionaries({"image": st.just(IMAGE), "state": st.none()}),
        st.fixed_dictionaries({"img": st.just(IMAGE), "state": st.just(START)}),
    )
)
@FUZZ
def test_observations_that_are_not_complete_mappings_are_rejected(state_planner, obs):
    message = rejects(state_planner, obs, GOAL, "obs")
    assert any(word in message for word in ("dict", "'image'", "'state'")), message


def test_a_rejected_input_leaves_the_planner_as_it_was(state_planner):
    """Nothing half-done: the warm start, RNG and goal cache are untouched by a rejection."""
    obs = {"image": IMAGE, "state": START}
    state_planner.reset()
    state_planner.plan(obs, GOAL)
    cache = (state_planner.cache_hits, state_planner.cache_misses)
    for bad in ({"image": IMAGE, "state": [np.nan] * 7}, {"image": IMAGE.astype(float)}):
        with pytest.raises(PlanInputError):
            state_planner.plan(obs, bad)
    assert (state_planner.cache_hits, state_planner.cache_misses) == cache
    after_rejections = state_planner.plan(obs, GOAL).actions
    state_planner.reset()
    state_planner.plan(obs, GOAL)
    np.testing.assert_array_equal(state_planner.plan(obs, GOAL).actions, after_rejections)


# -- odd but legal inputs -----------------------------------------------------------------------


def as_kind(array: np.ndarray, kind: str) -> object:
    """The same values as numpy, a torch tensor, a non-contiguous view or a read-only array."""
    if kind == "torch":
        return torch.from_numpy(array.copy())
    if kind == "list":
        return array.tolist()
    if kind == "strided":
        padded = np.zeros((*array.shape[:-1], array.shape[-1] * 2), array.dtype)
        padded[..., ::2] = array
        return padded[..., ::2]
    return array


@given(
    state_kind=st.sampled_from(["numpy", "torch", "list", "strided"]),
    image_kind=st.sampled_from(["numpy", "torch", "strided"]),
    precision=st.sampled_from([np.float32, np.float64, np.int64]),
    mapping=st.sampled_from([dict, types.MappingProxyType]),
)
@settings(max_examples=20, deadline=None)
def test_equivalent_input_types_give_the_same_plan(
    state_planner, state_kind, image_kind, precision, mapping
):
    state = np.array([1, 0, 0, 3, 0, 0, 1], precision)  # exact in every precision
    goal = {"image": IMAGE, "state": np.array([1, 0, 0, 3, 0, 0, 0], np.float32)}
    state_planner.reset()
    reference = state_planner.plan({"image": IMAGE, "state": state.astype(np.float32)}, goal)
    obs = mapping({"image": as_kind(IMAGE, image_kind), "state": as_kind(state, state_kind)})
    state_planner.reset()
    np.testing.assert_array_equal(state_planner.plan(obs, goal).actions, reference.actions)


@given(
    height=st.integers(MIN_IMAGE_SIDE, 96),
    width=st.integers(MIN_IMAGE_SIDE, 96),
    scale=st.sampled_from([1, 2]),
    as_torch=st.booleans(),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=15, deadline=None)
def test_images_of_any_legal_size_plan_on_the_pixel_model(
    pixel_planner, height, width, scale, as_torch, seed
):
    """Any camera size plans; a goal of the camera's aspect (any size) plans, with the resizes
    said as ImageResizeWarning; a goal of another aspect is refused, naming both sizes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (height * scale, width * scale, 3), dtype=np.uint8)
    obs = {"image": torch.from_numpy(image) if as_torch else image, "state": START}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageResizeWarning)
        plan = pixel_planner.plan(obs, goal)
    assert plan.action.shape == (7,) and np.isfinite(plan.action).all()
    assert np.isfinite(plan.energy)
    assert np.linalg.norm(plan.action[:3]) <= pixel_planner.safety.limits.step.translation + 1e-6
    if abs(height - width) > 0.02 * max(height, width):
        transposed = rng.integers(0, 256, (width, height, 3), dtype=np.uint8)
        sizes = (f"{width}x{height}", f"{height}x{width}")
        rejects(pixel_planner, obs, transposed, *sizes, "aspect ratio")


def test_the_largest_legal_image_plans_and_one_pixel_more_is_rejected(pixel_planner):
    """A 4096x4096 frame (the documented limit) is cropped and resized by the model; the float
    copy it makes is ~200 MB. One pixel more is rejected before the model sees it."""
    largest = np.zeros((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE, 3), np.uint8)
    largest[::7, ::5] = 255
    plan = pixel_planner.plan({"image": largest, "state": START}, largest[:64, :64])
    assert np.isfinite(plan.action).all()
    too_large = np.broadcast_to(largest[:1, :1], (MAX_IMAGE_SIDE + 1, 4000, 3))
    rejects(pixel_planner, {"image": too_large, "state": START}, largest, "4097x4000 pixels")
