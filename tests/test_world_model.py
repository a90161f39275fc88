"""World model: parity with the V-JEPA 2-AC reference fixture, the planner-facing API
(encode / rollout), the KV-cache rollout against the plain block-causal forward, bad inputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from robots.franka import integrate_pose
from world_model import ImageError, InputShapeError, WorldModel, WorldModelConfig
from world_model.encoder import as_image_batch, layer_norm_latents, preprocess_images

DATA = Path(__file__).parent / "data"
TINY_PT = DATA / "vjepa2_ac_tiny.pt"
TINY_CONFIG = DATA / "vjepa2_ac_tiny_config.json"
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny() -> WorldModel:
    return world_model.load(TINY_PT, config=TINY_CONFIG)


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(DATA / "vjepa2_ac_tiny_io.npz") as data:
        return {key: data[key] for key in data}


def max_error(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float((actual.detach().cpu() - torch.from_numpy(expected)).abs().max())


def test_tiny_preset_equals_fixture_config() -> None:
    fixture = world_model.config.config_from_dict(json.loads(TINY_CONFIG.read_text()))
    assert world_model.model.resolve_config("tiny") == fixture


def test_encoder_parity(tiny: WorldModel, io: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        pixels = preprocess_images(io["frames_uint8"], tiny.config.img_size)
        raw = tiny.encoder.encode_frames(pixels)
    assert max_error(raw, io["encoder_out"]) <= TOL
    latents = tiny.encode(io["frames_uint8"])  # [3, 16, 96]
    assert latents.dtype == torch.float32
    assert max_error(latents.reshape(1, -1, tiny.latent_dim), io["latents_layernormed"]) <= TOL


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_predictor_parity(tiny: WorldModel, io: dict[str, np.ndarray], frames: int) -> None:
    n, d = tiny.num_patches, tiny.latent_dim
    latents = torch.from_numpy(io["latents_layernormed"]).view(1, 3, n, d)[:, :frames]
    actions = torch.from_numpy(io["actions"])[:, :frames]
    states = torch.from_numpy(io["states"])[:, :frames]
    with torch.no_grad():
        out = tiny.predict(latents, actions, states)
    assert max_error(out.reshape(1, frames * n, d), io[f"predictor_out_T{frames}"]) <= TOL


def test_flattened_predictor_input_is_refused_naming_the_layout(tiny: WorldModel) -> None:
    """The release's predictor takes tokens flattened [B, T·N, D]; ours takes frames."""
    n, d = tiny.num_patches, tiny.latent_dim
    actions = states = torch.zeros(1, 2, 7)
    with pytest.raises(
        InputShapeError, match=rf"flattened \[B, T·N, D\].*unflatten\(1, \(-1, {n}\)\)"
    ):
        tiny.predict(torch.zeros(1, 2 * n, d), actions, states)
    with pytest.raises(InputShapeError, match=r"actions must be \[B, T, 7\]"):
        tiny.predict(torch.zeros(1, 2, n, d), torch.zeros(1, 3, 7), states)
    assert tiny.predict(torch.zeros(1, 2, n, d), actions, states).shape == (1, 2, n, d)


def test_rollout_first_step_matches_fixture(tiny: WorldModel, io: dict[str, np.ndarray]) -> None:
    """One rollout step = layer norm of the reference predictor output for frame 0."""
    z0 = tiny.encode(io["frames_uint8"][:1])
    s0 = torch.from_numpy(io["states"][:, 0])
    with torch.no_grad():
        predicted = tiny.rollout(z0, s0, torch.from_numpy(io["actions"][:, :1]))
    expected = layer_norm_latents(torch.from_numpy(io["predictor_out_T1"]))
    assert max_error(predicted[:, 0], expected.numpy()) <= TOL


def plain_rollout(model: WorldModel, z0, s0, actions) -> torch.Tensor:
    """Reference loop: recompute the full block-causal forward over all frames at each step
    and feed the layer-normed last prediction back (as the release's planner does)."""
    latents, states, outputs = z0[:, None], s0[:, None], []
    for step in range(actions.shape[1]):
        raw = model.predict(latents, actions[:, : step + 1], states)[:, -1]
        predicted = layer_norm_latents(raw)
        outputs.append(predicted)
        latents = torch.cat((latents, predicted[:, None]), dim=1)
        next_state = integrate_pose(states[:, -1], actions[:, step])
        states = torch.cat((states, next_state[:, None]), dim=1)
    return torch.stack(outputs, dim=1)


@pytest.fixture(scope="module")
def random_tiny() -> WorldModel:
    return world_model.build("tiny", seed=0)


@pytest.fixture(scope="module")
def random_small() -> WorldModel:
    return world_model.build("small", seed=0)


@pytest.mark.parametrize("preset", ["random_tiny", "random_small"])
@pytest.mark.parametrize("horizon", [1, 2, 3])
def test_kv_cache_rollout_equals_full_forward(
    request: pytest.FixtureRequest, preset: str, horizon: int
) -> None:
    model: WorldModel = request.getfixturevalue(preset)
    gen = torch.Generator().manual_seed(horizon)
    n, d = model.num_patches, model.latent_dim
    z0 = layer_norm_latents(torch.randn(4, n, d, generator=gen))
    s0 = torch.rand(4, 7, generator=gen) * 0.5
    actions = torch.randn(4, horizon, 7, generator=gen) * 0.05
    with torch.no_grad():
        fast = model.rollout(z0, s0, actions)
        plain = plain_rollout(model, z0, s0, actions)
    assert fast.shape == (4, horizon, n, d)
    assert float((fast - plain).abs().max()) <= 1e-4
    # layer-normed output: zero mean, unit variance per token
    assert float(fast.mean(-1).abs().max()) < 1e-4


def test_rollout_broadcasts_and_is_differentiable(random_tiny: WorldModel) -> None:
    n, d = random_tiny.num_patches, random_tiny.latent_dim
    z0 = layer_norm_latents(torch.randn(1, n, d))
    s0 = torch.full((1, 7), 0.3)
    actions = (torch.randn(5, 2, 7) * 0.05).requires_grad_(True)
    predicted = random_tiny.rollout(z0, s0, actions)
    assert predicted.shape == (5, 2, n, d)
    predicted[:, -1].abs().mean().backward()
    assert actions.grad is not None and torch.isfinite(actions.grad).all()
    assert float(actions.grad[:, 0].abs().sum()) > 0  # the first action shapes the last frame


def test_bf16_autocast_rollout_is_close(random_tiny: WorldModel) -> None:
    """The reduced-precision hot path (bf16 on CUDA; checked here with CPU autocast)."""
    z0 = layer_norm_latents(torch.randn(3, random_tiny.num_patches, random_tiny.latent_dim))
    s0, actions = torch.full((3, 7), 0.2), torch.randn(3, 2, 7) * 0.05
    with torch.no_grad():
        exact = random_tiny.rollout(z0, s0, actions)
        random_tiny.autocast_dtype = torch.bfloat16
        try:
            reduced = random_tiny.rollout(z0, s0, actions)
        finally:
            random_tiny.autocast_dtype = None
    assert reduced.dtype == torch.float32
    assert float((reduced - exact).abs().mean()) < 0.05


def test_rollout_bad_shapes_are_named(random_tiny: WorldModel) -> None:
    n, d = random_tiny.num_patches, random_tiny.latent_dim
    z0, s0 = torch.zeros(2, n, d), torch.zeros(2, 7)
    with pytest.raises(InputShapeError, match="actions"):
        random_tiny.rollout(z0, s0, torch.zeros(2, 3, 6))
    with pytest.raises(InputShapeError, match="z0"):
        random_tiny.rollout(torch.zeros(2, n + 1, d), s0, torch.zeros(2, 3, 7))
    with pytest.raises(InputShapeError, match="batch"):
        random_tiny.rollout(z0, torch.zeros(3, 7), torch.zeros(2, 3, 7))
    with pytest.raises(InputShapeError, match="horizon"):
        random_tiny.rollout(z0, s0, torch.zeros(2, random_tiny.config.max_frames + 1, 7))


def test_real_franka_pair_encodes(tiny: WorldModel) -> None:
    with np.load(DATA / "franka_real_pair.npz") as data:
        observations = data["observations"]  # [1, 2, 256, 256, 3] uint8
    latents = tiny.encode(observations[0])
    assert latents.shape == (2, tiny.num_patches, tiny.latent_dim)
    assert torch.isfinite(latents).all()
    single = tiny.encode(torch.from_numpy(observations[0, 1]))  # [H, W, 3] torch
    assert torch.allclose(single[0], latents[1], atol=1e-5)


def test_preprocessing_crops_and_normalises() -> None:
    image = np.zeros((60, 100, 3), dtype=np.uint8)
    image[:, 20:80] = 255  # the centre square (columns 20..79) is white, the sides black
    pixels = preprocess_images(image, 32)
    assert pixels.shape == (1, 3, 32, 32)
    white = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(pixels[0, :, 16, 16], white, atol=1e-5)
    assert torch.allclose(pixels.amin(dim=(0, 2, 3)), white, atol=1e-5)


def test_read_only_images_encode_without_warning_or_needless_copy() -> None:
    """ROS messages, ``np.frombuffer`` and memory maps give read-only arrays: torch warns on
    ``from_numpy`` of those, so they are copied; writable ones are used in place."""
    model = world_model.build("tiny", seed=0)
    rng = np.random.default_rng(0)
    writable = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    from_buffer = np.frombuffer(writable.tobytes(), dtype=np.uint8).reshape(writable.shape)
    flagged = writable.copy()
    flagged.flags.writeable = False
    assert not from_buffer.flags.writeable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        expected = model.encode(writable)
        for image in (from_buffer, flagged):
            torch.testing.assert_close(model.encode(image), expected, rtol=0, atol=0)
    assert caught == []
    assert np.shares_memory(as_image_batch(writable).numpy(), writable)  # no copy when writable
    assert not flagged.flags.writeable  # the caller's array is left as it was


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((64, 64, 3), dtype=np.float32), "uint8"),
        (torch.zeros(64, 64, 3), "uint8"),
        (np.zeros((3, 64, 64), dtype=np.uint8), r"\[H, W, 3\]"),
        (np.zeros((2, 2, 64, 64, 3), dtype=np.uint8), r"\[B, H, W, 3\]"),
        ([[0, 1, 2]], "numpy array or torch tensor"),
    ],
)
def test_bad_images_raise_clear_errors(tiny: WorldModel, images, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        tiny.encode(images)


def test_build_presets_and_config_errors() -> None:
    model = world_model.build("tiny", seed=1)
    assert isinstance(model.config, WorldModelConfig)
    assert (model.num_patches, model.latent_dim) == (16, 96)
    with pytest.raises(FileNotFoundError, match="known"):
        world_model.build("no-such-preset")
    with pytest.raises(ValueError, match="head dim"):
        WorldModelConfig(encoder=world_model.EncoderConfig(embed_dim=100, num_heads=3))


def test_residual_predictor_starts_as_identity_and_matches_full_forward() -> None:
    """``predictor.residual`` adds the input latent back: a fresh model predicts "no change",
    shares ``small``'s encoder, and its KV-cache rollout still equals the full forward pass."""
    plain, residual = (
        world_model.build("small", seed=0),
        world_model.build("small-residual", seed=0),
    )
    assert residual.config.predictor.residual and not plain.config.predictor.residual
    for (name, a), b in zip(
        plain.encoder.state_dict().items(), residual.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    gen = torch.Generator().manual_seed(0)
    z0 = layer_norm_latents(
        torch.randn(2, residual.num_patches, residual.latent_dim, generator=gen)
    )
    s0, actions = torch.rand(2, 7, generator=gen), torch.randn(2, 3, 7, generator=gen) * 0.05
    with torch.no_grad():
        fresh = residual.rollout(z0, s0, actions)
    assert float((fresh - z0[:, None]).abs().max()) < 1e-5
    with torch.no_grad():  # perturb the zero-initialised head: the rollout stays exact
        residual.predictor.predictor_proj.weight.normal_(0.0, 0.02, generator=gen)
        fast = residual.rollout(z0, s0, actions)
        full = plain_rollout(residual, z0, s0, actions)
    assert float((fast - full).abs().max()) <= 1e-4
    assert float((fast - z0[:, None]).abs().max()) > 1e-3
