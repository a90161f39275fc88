"""The amortised proposal and the ``amortised`` actor (``fast``), on the ground-truth-state model:
a policy trained for seconds by the module's own ``fit`` proposes well enough that the probes
rarely win; a policy trained to go the wrong way is caught by the probes and the full search
runs; files round-trip and mismatches are one clear error; ``jepa-mpc train policy`` runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import world_model
from jepa_mpc.cli import main as cli_main
from planner import Planner
from planner.actors import ActionSpace
from planner.config import default_preset, load_planner_config
from planner.policy import (
    PolicyConfig,
    PolicyError,
    ProposalPolicy,
    load_policy,
    policy_info,
    save_policy,
)
from planner.policy_train import Frames, Labels, fit, greedy_targets, held_out_errors, main
from world_model.data import TrajectoryWriter
from world_model.state_model import StateWorldModel

IMAGE = np.zeros((32, 32, 3), np.uint8)
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
FAST = ["actor.samples=48", "actor.iterations=4", "cost.readout_weights=[0,0,0,0,0,0,0]"]


@pytest.fixture(scope="module")
def model() -> StateWorldModel:
    return StateWorldModel(num_patches=8, latent_dim=16, seed=0)


def random_states(count: int, rng: np.random.Generator) -> torch.Tensor:
    """States around START: positions within ±12 cm, gripper open or half closed."""
    states = np.repeat(START[None], count, axis=0)
    states[:, :3] += rng.uniform(-0.12, 0.12, size=(count, 3)).astype(np.float32)
    states[:, 6] = rng.choice([0.0, 0.5], size=count)
    return torch.from_numpy(states)


def trained_policy(model, sign: float, steps: int = 400) -> tuple[ProposalPolicy, dict]:
    """A policy fitted on greedy expert labels (times ``sign``) over random state pairs."""
    rng = np.random.default_rng(0)
    config = load_planner_config("fast", FAST)
    space = ActionSpace(config.bounds)
    states = random_states(600, rng)
    frames = Frames(
        np.zeros((600, 1, 1, 3), np.uint8),
        model.encode(None, states),
        states,
        np.arange(600),
        np.arange(600),
    )
    now, then = rng.integers(0, 600, 4000), rng.integers(0, 600, 4000)
    targets = sign * greedy_targets(space, states[now], states[then], 1, None)
    train = Labels(now[:3500], then[:3500], targets[:3500])
    held = Labels(now[3500:], then[3500:], targets[3500:])
    limit = tuple(float(v) for v in space.limit)
    policy = ProposalPolicy(PolicyConfig(8, 16, horizon=1, hidden=64, limit=limit))
    fit(policy, frames, [train], steps=steps, batch=128, seed=0, log=lambda *_: None)
    return policy, held_out_errors(policy, frames, {"expert": held})["expert"]


def fast_planner(model, path, *overrides: str) -> Planner:
    return Planner.from_config("fast", model, "cpu", [*FAST, f"actor.policy={path}", *overrides])


def run_goals(planner: Planner, model, goals: list[np.ndarray]) -> tuple[float, list[float]]:
    """Plan once per goal; (mean energy relative to holding still, evaluations per plan)."""
    ratios, evaluations = [], []
    for goal in goals:
        planner.reset()
        plan = planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE, "state": goal})
        zero = model.encode(None, torch.from_numpy(START)) - model.encode(
            None, torch.from_numpy(goal)
        )
        ratios.append(plan.energy / float(zero.abs().mean()))
        evaluations.append(plan.evaluations)
    return float(np.mean(ratios)), evaluations


def goals(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    out = []
    for _ in range(count):
        goal = START.copy()
        goal[:3] += rng.uniform(-0.04, 0.04, 3).astype(np.float32)
        out.append(goal)
    return out


@pytest.fixture(scope="module")
def policies(model, tmp_path_factory) -> dict:
    """Paths of a policy trained toward the goal and of one trained to go the other way."""
    folder = tmp_path_factory.mktemp("policies")
    good, error = trained_policy(model, sign=1.0)
    assert error["policy"] < 0.5 * error["zero"]  # it learned the greedy step
    bad, _ = trained_policy(model, sign=-1.0)
    return {
        "good": save_policy(good, folder / "good.safetensors", {"made": "test"}),
        "bad": save_policy(bad, folder / "bad.safetensors"),
    }


def test_a_trained_proposal_is_refined_with_a_fraction_of_the_evaluations(model, policies):
    fast = fast_planner(model, policies["good"])
    ratio, evaluations = run_goals(fast, model, goals(16))
    assert fast.actor.fell_back <= 3  # the probes rarely beat a good proposal
    assert ratio < 0.4  # the energy left, relative to holding still (full search: ~0.09)
    full = Planner.from_config("icem", model, "cpu", ["actor.samples=48", "actor.iterations=4"])
    _, full_evaluations = run_goals(full, model, goals(16))
    assert np.median(evaluations) < 0.5 * np.median(full_evaluations)
    assert policy_info(policies["good"]) == {"made": "test"}


def test_probes_catch_a_proposal_that_goes_the_wrong_way(model, policies):
    unguarded = fast_planner(model, policies["bad"], "actor.probes=0")
    unguarded_ratio, _ = run_goals(unguarded, model, goals(16))
    guarded = fast_planner(model, policies["bad"])
    guarded_ratio, evaluations = run_goals(guarded, model, goals(16))
    assert unguarded.actor.fell_back == 0 and guarded.actor.fell_back >= 6
    assert guarded_ratio < 0.75 * unguarded_ratio  # the full search recovered those plans
    assert max(evaluations) > 2 * min(evaluations)  # fallbacks cost the full search


def test_policy_files_round_trip_and_refuse_what_does_not_fit(model, tmp_path):
    torch.manual_seed(0)
    limit = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)
    policy = ProposalPolicy(PolicyConfig(8, 16, horizon=2, hidden=32, limit=limit))
    path = save_policy(policy, tmp_path / "p" / "policy.safetensors")
    latent, state = torch.randn(3, 8, 16), torch.from_numpy(START).expand(3, 7)
    loaded = load_policy(tmp_path / "p")  # a folder finds its policy.safetensors
    actions = loaded(latent, torch.randn(1, 8, 16), state)
    assert actions.shape == (3, 2, 7) and bool((actions.abs() <= torch.tensor(limit)).all())
    assert bool((actions[..., 3:6] == 0).all())  # rotation has bound 0: never proposed
    with torch.no_grad():
        expected = policy(latent, torch.zeros(1, 8, 16), state)
        assert torch.equal(loaded(latent, torch.zeros(1, 8, 16), state), expected)
    other = StateWorldModel(num_patches=4, latent_dim=16)
    with pytest.raises(PolicyError, match=r"\[8, 16\] latents.*\[4, 16\]"):
        fast_planner(other, path)
    with pytest.raises(PolicyError, match="jepa-mpc train policy"):
        fast_planner(model, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a policy")
    with pytest.raises(PolicyError, match="unreadable"):
        load_policy(tmp_path / "junk.safetensors")


def test_fast_without_a_policy_still_plans_from_its_previous_action(model):
    planner = Planner.from_config("fast", model, "cpu", [*FAST, "actor.policy=none"])
    goal = START.copy()
    goal[:3] += [0.03, -0.02, 0.01]  # 3.7 cm away
    state, distances = START.copy(), []
    for _ in range(6):
        plan = planner.plan({"image": IMAGE, "state": state}, {"image": IMAGE, "state": goal})
        state = state + plan.action
        distances.append(float(np.linalg.norm(state[:3] - goal[:3])))
    assert distances[0] < 0.03 and distances[-1] < 0.01, distances


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A tiny model with a readout head, saved, and 3 episodes of 6 frames (64 px)."""
    root = tmp_path_factory.mktemp("policy")
    config = world_model.config.load_model_config("tiny", ["readout.enabled=true"])
    world_model.save(world_model.build(config, seed=0), root / "model")
    rng = np.random.default_rng(0)
    with TrajectoryWriter(root / "data", episodes_per_chunk=2) as writer:
        for _ in range(3):
            states = np.repeat(START[None], 6, axis=0)
            states[:, :3] += np.cumsum(rng.normal(scale=0.02, size=(6, 3)), axis=0)
            frames = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
            writer.add_episode(frames, states.astype(np.float32), task="reach", success=True)
    return root


def test_train_policy_cli_writes_a_policy_that_fast_loads(small_dataset, tmp_path, capsys):
    out = tmp_path / "policy.safetensors"
    argv = ["train", "policy", "--model", str(small_dataset / "model"), "--data"]
    argv += [str(small_dataset / "data"), "--out", str(out), "--planner-labels", "3"]
    argv += ["--expert-pairs", "64", "--steps", "5", "--held-out", "0.34"]
    tiny_search = ["actor.samples=8", "actor.iterations=1", "actor.elites=2"]
    assert cli_main([*argv, *tiny_search]) == 0
    info = policy_info(out)
    assert info["labels"] == {"expert": 64, "planner": 2} and info["frames"] == 18
    assert set(info["held_out_error"]) == {"expert", "planner"}
    assert "wrote" in capsys.readouterr().out
    model = world_model.load(small_dataset / "model")
    planner = Planner.from_config("fast", model, "cpu", [f"actor.policy={out}"])
    assert planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE}).actions.shape == (1, 7)
    assert main([*argv[2:], *tiny_search, "actor.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_fast_takes_the_policy_beside_the_model_and_is_the_default_there(tmp_path, model):
    """``actor.policy: model`` (fast.yaml) = the policy.safetensors in the checkpoint folder;
    ``default_preset`` is fast exactly for folders that hold one."""
    folder = tmp_path / "with_policy"
    world_model.save(world_model.build("tiny", seed=0), folder)
    assert default_preset(str(folder)) == "icem"  # no policy yet
    config = load_planner_config("fast", FAST)
    limit = tuple(float(v) for v in ActionSpace(config.bounds).limit)
    loaded = world_model.load(folder)
    policy = ProposalPolicy(PolicyConfig(loaded.num_patches, loaded.latent_dim, 1, limit=limit))
    save_policy(policy, folder / "policy.safetensors")
    assert default_preset(str(folder)) == "fast" and default_preset("state") == "icem"
    planner = Planner.from_config("fast", str(folder), "cpu", FAST)
    assert planner.config.actor.policy == str(folder)
    assert planner.plan({"image": IMAGE, "state": START}, {"image": IMAGE}).actions.shape == (1, 7)
    with pytest.raises(ValueError, match="actor.policy: model means the policy beside"):
        Planner.from_config("fast", model, "cpu", FAST)  # built in memory: no folder


def test_bad_fast_settings_are_refused_by_name(model):
    with pytest.raises(ValueError, match="refine_iterations must be >= 1"):
        Planner.from_config("fast", model, "cpu", [*FAST, "actor.refine_iterations=0"])
    with pytest.raises(ValueError, match="refine_samples must be >= 1"):
        Planner.from_config("fast", model, "cpu", [*FAST, "actor.refine_samples=0"])
