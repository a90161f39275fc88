"""The one-goal keypoint policy (issue #15): spatial soft-argmax over each view's token grid,
trained on DAgger labels (``jepa-mpc train policy --dagger``), shipped beside the model and
executed by the ``policy`` actor (``keypoint_policy`` preset, ``actor.policy: model:NAME``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_dagger import dagger_dir  # noqa: F401 (fixture)
from test_subgoals import frame

import world_model
from planner import Planner, load_planner_config
from planner.config import with_model_policy
from planner.policy import (
    KeypointPolicy,
    PolicyConfig,
    PolicyError,
    build_policy,
    load_policy,
    named_policy_file,
    save_policy,
)
from planner.policy_dagger import fit_keypoints
from planner.policy_train import main as train_policy_main
from robots.config import ConfigError
from world_model.dagger_data import LabelledCache

LIMIT = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)


def keypoint_policy(num_patches: int = 16, dim: int = 8, views: int = 1) -> KeypointPolicy:
    config = PolicyConfig(
        num_patches, dim, 1, 16, LIMIT, kind="keypoints", keypoints=2, views=views
    )
    return KeypointPolicy(config)


def test_the_keypoint_policy_proposes_one_bounded_action_with_a_full_gripper_command() -> None:
    torch.manual_seed(0)
    policy = keypoint_policy(num_patches=32, views=2)
    actions = policy(torch.randn(5, 32, 8), torch.randn(1, 32, 8), torch.rand(5, 7))
    assert actions.shape == (5, 1, 7)
    assert actions[..., :3].abs().max() <= 0.075 and not actions[..., 3:6].any()
    assert set(actions[..., 6].abs().flatten().tolist()) == {0.75}
    with pytest.raises(PolicyError, match="square per-view token grids"):
        keypoint_policy(num_patches=24)
    with pytest.raises(PolicyError, match="unknown policy kind 'mlp'"):
        build_policy(PolicyConfig(16, 8, kind="mlp"))


def test_a_saved_keypoint_policy_loads_as_itself(tmp_path) -> None:
    torch.manual_seed(1)
    policy = keypoint_policy()
    path = save_policy(policy, tmp_path / "policy_keypoints.safetensors", {"made": "test"})
    loaded = load_policy(path)
    assert isinstance(loaded, KeypointPolicy) and loaded.config == policy.config
    inputs = (torch.randn(3, 16, 8), torch.randn(1, 16, 8), torch.rand(3, 7))
    torch.testing.assert_close(loaded(*inputs), policy.eval()(*inputs))


def located_cache(episodes: int = 20, frames: int = 12) -> LabelledCache:
    """One view of 4 x 4 tokens; a "hot" token somewhere. The expert moves +3 cm in x when
    it lies in the grid's right half, -3 cm when in the left, and closes the hand when it lies
    in the lower half: the labels depend only on where something is."""
    generator = torch.Generator().manual_seed(0)
    spots = torch.randint(16, (episodes * frames,), generator=generator)
    latents = torch.zeros(episodes * frames, 16, 8)
    latents[torch.arange(len(spots)), spots, 0] = 3.0
    states = torch.zeros(len(spots), 7)
    targets = states.clone()
    targets[:, 0] = torch.where(spots % 4 >= 2, 0.03, -0.03)
    targets[:, 6] = (spots // 4 >= 2).float()
    goal_of = torch.arange(episodes).repeat_interleave(frames)
    return LabelledCache(
        latents.half(), states, targets, torch.zeros(episodes, 16, 8).half(), goal_of
    )


def test_fitting_learns_moves_that_depend_on_where_things_are() -> None:
    torch.manual_seed(0)
    policy = keypoint_policy()
    cache, cpu = located_cache(), torch.device("cpu")
    figures = fit_keypoints(policy, cache, 1000, 32, 0, cpu, log=lambda line: None)
    held = figures["held_out"]  # every 10th episode: never trained on
    assert held["move_cosine"] > 0.95 and held["move_error_cm"] < 1.5
    assert held["intent_accuracy"] > 0.95


def test_model_colon_name_means_a_policy_file_beside_the_model(tmp_path) -> None:
    config = load_planner_config("keypoint_policy")
    assert config.actor.name == "policy" and config.actor.policy == "model:keypoints"
    placed = with_model_policy(config, SimpleNamespace(source=tmp_path))
    assert Path(placed.actor.policy) == tmp_path / "policy_keypoints.safetensors"
    beside_file = with_model_policy(config, SimpleNamespace(source=tmp_path / "model.pt"))
    assert Path(beside_file.actor.policy) == tmp_path / "policy_keypoints.safetensors"
    with pytest.raises(ConfigError, match="model:keypoints means the policy beside"):
        with_model_policy(config, SimpleNamespace(source=None))


def test_train_policy_dagger_writes_a_policy_the_policy_actor_executes(
    dagger_dir,  # noqa: F811
    tmp_path,
    capsys,
) -> None:
    out = tmp_path / "policy_keypoints.safetensors"
    argv = ["--model", "random:tiny", "--dagger", str(dagger_dir), "--out", str(out)]
    assert train_policy_main([*argv, "--steps", "20", "--batch", "8", "--hidden", "16"]) == 0
    assert "held-out" in capsys.readouterr().out
    policy = load_policy(out)
    assert isinstance(policy, KeypointPolicy)
    model = world_model.build("tiny", seed=0)
    overrides = ["actor.name=policy", f"actor.policy={out}", "cpu_threads=1"]
    planner = Planner(load_planner_config("icem", overrides), model, "cpu")
    state = np.array([0.4, 0.0, 0.2, np.pi, 0.0, 0.0, 0.0], np.float32)
    plan = planner.plan({"image": frame(0.4), "state": state}, {"image": frame(0.55)})
    with torch.no_grad():
        expected = policy(
            model.encode(frame(0.4)), model.encode(frame(0.55)), torch.from_numpy(state)[None]
        )[0, 0]
    np.testing.assert_allclose(plan.action[:3], expected[:3].numpy(), atol=1e-5)
    assert plan.evaluations == 1


def test_train_policy_wants_one_kind_of_data(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_policy_main(["--model", "random:tiny", "--out", "x.safetensors"])
    assert exit_info.value.code == 2
    assert "give one of --data (proposal policy) or --dagger" in capsys.readouterr().err


def test_sim_small_v2_ships_a_keypoint_policy_that_keypoint_policy_pushes_with() -> None:
    """The bundled two-view model carries its keypoint policy (checked against the folder's
    record); `keypoint_policy` plans the first step of a push from the final goal image."""
    import sim

    planner = Planner.from_config("keypoint_policy", "sim-small-v2", "cpu", ["cpu_threads=1"])
    assert isinstance(planner.actor.policy, KeypointPolicy)
    env = sim.make("push", image_size=128, seed=10_000, cameras="exterior,wrist")
    obs, _ = env.reset(seed=10_000)
    goal = env.unwrapped.goal()
    env.close()
    plan = planner.plan(obs, goal)
    assert plan.evaluations == 1 and np.isfinite(plan.energy)
    assert np.abs(plan.action[:3]).sum() <= 0.075 + 1e-6 and plan.action[2] < 0  # descends


def test_the_recipe_copies_the_model_without_a_shipped_policy_record(tmp_path) -> None:
    """A round writes its own policy beside a copy of the model: the copy's SHA256SUMS must not
    keep the shipped policy's hash (the new file would fail its check)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "keypoint_dagger.py"
    spec = importlib.util.spec_from_file_location("keypoint_dagger", script)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    policy = named_policy_file(recipe.preset_policy("reach_policy"))
    assert policy == "policy_reach.safetensors"
    source = world_model.save(world_model.build("tiny", seed=0), tmp_path / "model")
    (source / "SHA256SUMS").write_text(
        (source / "SHA256SUMS").read_text()
        + f"{'0' * 64}  {policy}\n{'1' * 64}  policy_keypoints.safetensors\n"
    )
    copy = recipe.model_copy(str(source), tmp_path / "round1" / "model", policy)
    kept = (copy / "SHA256SUMS").read_text()
    assert "policy_" not in kept and "model.safetensors" in kept  # no policy the copy lacks
    assert world_model.load(copy).num_patches == 16  # the copy's record still checks out
    with pytest.raises(ValueError, match="--planner fast runs actor.policy 'model'"):
        recipe.preset_policy("fast")  # a preset that trains no named policy


def test_sim_small_v2_ships_a_pick_place_policy_that_goes_for_the_cube() -> None:
    """``pick_place_policy`` (``model:pick_place``) from the final goal image: the first move
    descends from home toward the cube with the gripper open."""
    import sim

    planner = Planner.from_config("pick_place_policy", "sim-small-v2", "cpu", ["cpu_threads=1"])
    assert Path(planner.config.actor.policy).name == "policy_pick_place.safetensors"
    env = sim.make("pick_place", image_size=128, seed=10_000, cameras="exterior,wrist")
    obs, _ = env.reset(seed=10_000)
    goal = env.unwrapped.goal()
    env.close()
    plan = planner.plan(obs, goal)
    assert plan.evaluations == 1 and plan.action[2] < -0.02 and plan.action[6] <= 0


def test_sim_small_v2_ships_a_reach_policy_that_reach_policy_reaches_with() -> None:
    """The bundled model carries a second keypoint policy for reach (``model:reach``); from the
    final goal image its first move heads toward the target."""
    import sim

    planner = Planner.from_config("reach_policy", "sim-small-v2", "cpu", ["cpu_threads=1"])
    assert isinstance(planner.actor.policy, KeypointPolicy)
    assert Path(planner.config.actor.policy).name == "policy_reach.safetensors"
    env = sim.make("reach", image_size=128, seed=10_000, cameras="exterior,wrist")
    obs, _ = env.reset(seed=10_000)
    goal = env.unwrapped.goal()
    target = env.unwrapped.task.target - obs["state"][:3]
    env.close()
    plan = planner.plan(obs, goal)
    assert plan.evaluations == 1 and np.isfinite(plan.energy)
    move = plan.action[:3]
    assert float(move @ target) / (np.linalg.norm(move) * np.linalg.norm(target)) > 0.7
