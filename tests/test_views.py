"""Two camera views side by side (exterior + wrist): the sim renders them, collect records them,
a ``views: 2`` world model encodes each with the shared encoder and predicts all their tokens,
the planner and the bench hand each model its own views, and mismatches are one clear error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sim
import world_model
from jepa_mpc.bench import main as bench_main
from jepa_mpc.collect import collect
from planner import PlanInputError, Planner
from robots.config import ConfigError
from sim.scene import cameras_for_views, check_cameras, first_views
from sim.tasks import TRAINING_SEEDS_START
from world_model.errors import ImageError
from world_model.model import resolve_config, with_views
from world_model.train import load_train_config, train

SMALL = ["actor.samples=8", "actor.iterations=1", "actor.elites=2"]


def two_view_tiny(seed: int = 0) -> world_model.WorldModel:
    """The 64 px ``tiny`` model taking two views (2 x 16 tokens per frame)."""
    config = dataclasses.replace(resolve_config("tiny"), views=2)
    return world_model.build(config, seed=seed)


@pytest.fixture(scope="module")
def two_view_env():
    env = sim.make("grasp", image_size=64, seed=3, cameras="exterior,wrist")
    yield env
    env.close()


def test_the_sim_renders_exterior_then_wrist_side_by_side(two_view_env) -> None:
    obs, _ = two_view_env.reset(seed=3)
    assert obs["image"].shape == (64, 128, 3) == two_view_env.observation_space["image"].shape
    single = sim.make("grasp", image_size=64, seed=3)
    try:
        alone, _ = single.reset(seed=3)
        np.testing.assert_array_equal(first_views(obs["image"], 1), alone["image"])
    finally:
        single.close()
    wrist = obs["image"][:, 64:]
    assert not np.array_equal(wrist, alone["image"]) and wrist.std() > 5
    assert two_view_env.unwrapped.goal()["image"].shape == (64, 128, 3)


def test_the_wrist_view_moves_with_the_hand_and_shows_the_fingers_close(two_view_env) -> None:
    """A gripper change is a large change in the wrist view (the fingers cross many pixels)."""
    env = two_view_env.unwrapped
    env.reset(seed=3)
    scenes = env.task.subgoal_scenes()  # grasp: above, around (open), closed on the cube, lift
    around, closed = (env.render_scene(scene)["image"] for scene in scenes[1:3])
    change = np.abs(around.astype(int) - closed.astype(int)).sum(axis=2) > 30
    exterior, wrist = change[:, :64].sum(), change[:, 64:].sum()
    assert wrist > 4 * max(exterior, 1)


def test_camera_names_are_checked() -> None:
    assert check_cameras("exterior, wrist") == ("exterior", "wrist")
    assert cameras_for_views(2) == ("exterior", "wrist")
    for bad in ("", "wrist,wrist", "top"):
        with pytest.raises(ValueError, match="cameras must be distinct names"):
            check_cameras(bad)
    with pytest.raises(ValueError, match="the sim has 2 cameras"):
        cameras_for_views(3)
    with pytest.raises(ValueError, match="pybullet backend renders the exterior camera only"):
        sim.make("reach", backend="pybullet", image_size=32, cameras="exterior,wrist")


def test_a_two_view_model_encodes_each_view_with_the_shared_encoder() -> None:
    model = two_view_tiny()
    single = world_model.build("tiny", seed=0)
    single.encoder.load_state_dict(model.encoder.state_dict())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 128, 3), dtype=np.uint8)
    latents = model.encode(images)
    assert latents.shape == (3, 32, model.latent_dim) and model.num_patches == 32
    torch.testing.assert_close(latents[:, :16], single.encode(images[:, :, :64]))
    torch.testing.assert_close(
        latents[:, 16:], single.encode(np.ascontiguousarray(images[:, :, 64:]))
    )
    with pytest.raises(ImageError, match="2 camera views side by side"):
        model.encode(images[:, :, :64])


def test_the_predictor_places_the_second_view_right_of_the_first() -> None:
    """RoPE columns continue across views, as in the side-by-side image."""
    model = two_view_tiny()
    predictor = model.predictor
    table = predictor.rope_cos[0, 2:]  # frame 0, patch tokens
    single = world_model.build("tiny", seed=0).predictor.rope_cos[0, 2:]
    torch.testing.assert_close(table[:16], single)
    assert not torch.allclose(table[16:], single)  # same rows, columns 4..7
    latents = model.encode(np.zeros((1, 64, 128, 3), np.uint8))[:, None].expand(1, 2, -1, -1)
    out = predictor(latents, torch.zeros(1, 2, 7), torch.zeros(1, 2, 7))
    assert out.shape == (1, 2, 32, model.latent_dim)


def test_with_views_keeps_the_encoder_and_predictor_weights() -> None:
    single = world_model.build("tiny", seed=1)
    single.add_readout()
    wide = with_views(single, 2)
    assert wide.config.views == 2 and wide.readout is None and single.config.views == 1
    for name, tensor in single.encoder.state_dict().items():
        torch.testing.assert_close(wide.encoder.state_dict()[name], tensor)
    for name, tensor in single.predictor.state_dict().items():
        torch.testing.assert_close(wide.predictor.state_dict()[name], tensor)


def test_a_two_view_model_saves_loads_and_plans(tmp_path: Path, two_view_env) -> None:
    world_model.save(two_view_tiny(seed=2), tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["views"] == 2
    model = world_model.load(tmp_path / "m")
    assert model.config.views == 2
    planner = Planner.from_config("icem", model, "cpu", SMALL)
    obs, _ = two_view_env.reset(seed=4)
    goal = two_view_env.unwrapped.goal()
    plan = planner.plan(obs, goal)
    assert plan.action.shape == (7,) and np.isfinite(plan.action).all()
    with pytest.raises(PlanInputError, match="takes 2 square camera views side by side"):
        planner.plan({**obs, "image": first_views(obs["image"], 1)}, first_views(goal["image"], 1))


def test_collect_records_the_cameras_and_training_checks_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    collect(
        data,
        ["grasp"],
        episodes=2,
        seed=TRAINING_SEEDS_START,
        workers=1,
        progress=False,
        image_size=64,
        steps=5,
        cameras="exterior,wrist",
    )
    meta = json.loads((data / "meta.json").read_text())
    assert meta["info"]["cameras"] == ["exterior", "wrist"] and meta["image_size"] == [64, 128]
    common = [f"data.root={data}", "steps=2", "batch_size=2", "device=cpu", "data.clip_len=3"]
    init = tmp_path / "single"
    world_model.save(world_model.build("tiny", seed=0), init)
    # a single-view model cannot train on two-view frames ...
    config = load_train_config("predictor_tiny", [*common, f"out={tmp_path / 'a'}"])
    with pytest.raises(ConfigError, match="record with jepa-mpc collect --cameras exterior$"):
        train("predictor", config)
    # ... its widened copy can (init + views: 2)
    config = load_train_config(
        "predictor_tiny", [*common, f"out={tmp_path / 'b'}", f"init={init}", "views=2"]
    )
    train("predictor", config)
    trained = world_model.load(tmp_path / "b" / "model")
    assert trained.config.views == 2 and trained.num_patches == 32


def test_the_masked_encoder_stage_refuses_a_two_view_model(tmp_path: Path) -> None:
    """Its masks span one view's grid: a two-view model trains end to end (train joint)."""
    from world_model.train_encoder import EncoderObjective

    config = load_train_config("encoder_tiny", [f"data.root={tmp_path}"])
    with pytest.raises(ConfigError, match="single-view models; this one takes 2 views"):
        EncoderObjective(two_view_tiny(), config.encoder, seed=0, rank=0, total_steps=1)


def test_the_bench_gives_each_model_its_own_views(tmp_path: Path) -> None:
    """A two-view and a single-view model side by side in one run: the env renders both
    cameras, the single-view planner gets the exterior view alone."""
    world_model.save(two_view_tiny(seed=3), tmp_path / "wide")
    world_model.save(world_model.build("tiny", seed=3), tmp_path / "narrow")
    out = tmp_path / "bench"
    status = bench_main(
        [
            "--tasks", "reach", "--planners", "icem", "--baselines", "",
            "--models", f"{tmp_path / 'wide'},{tmp_path / 'narrow'}",
            "--episodes", "1", "--steps", "2", "--device", "cpu", "--no-verify",
            "--out", str(out), *SMALL,
        ]
    )  # fmt: skip
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    methods = {episode["method"] for episode in results["episodes"]}
    assert methods == {"icem@wide", "icem@narrow"}


def test_the_bundled_two_view_model_loads_verified_and_plans_with_fast(two_view_env) -> None:
    """sim-small-v2: exterior + wrist views, its own proposal policy beside it (fast)."""
    from planner.config import default_preset

    model = world_model.load("sim-small-v2", verify="strict")
    assert model.config.views == 2 and model.num_patches == 128 and model.readout is not None
    assert default_preset("sim-small-v2") == "fast"
    planner = Planner.from_config("fast", "sim-small-v2", "cpu", ["cpu_threads=1"])
    env = sim.make("grasp", image_size=128, seed=10000, cameras="exterior,wrist")
    try:
        obs, _ = env.reset(seed=10000)
        plan = planner.plan(obs, env.unwrapped.subgoals()[0])
    finally:
        env.close()
    assert plan.action.shape == (7,) and np.isfinite(plan.action).all()


def test_view_weights_weigh_each_views_tokens_and_must_fit_the_model() -> None:
    from planner.config import CostConfig
    from planner.cost import Cost

    predicted = torch.zeros(1, 1, 4, 2)
    predicted[..., 2:, :] = 1.0  # the second view's two tokens differ by 1, the first's by 0
    goal = torch.zeros(1, 4, 2)
    plain = Cost(CostConfig()).latent_distance(predicted, goal)
    weighted = Cost(CostConfig(view_weights=[3.0, 1.0])).latent_distance(predicted, goal)
    assert plain.item() == pytest.approx(0.5) and weighted.item() == pytest.approx(0.25)
    for bad in ([], [0.0, 0.0], [1.0, -1.0]):
        with pytest.raises(ConfigError, match="cost.view_weights must be null or one"):
            CostConfig(view_weights=bad)
    with pytest.raises(ConfigError, match="has 2 weight.* takes 1 camera view"):
        Planner.from_config("icem", world_model.build("tiny"), "cpu", ["cost.view_weights=[1,1]"])
