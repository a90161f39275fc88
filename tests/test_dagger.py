"""DAgger for the hierarchical mode (issue #15): labelled trajectories (the expert's action at
every frame a planner visited, and its goal image), the relabelling expert's tolerance,
`jepa-mpc collect --planner`, the subgoal stage's DAgger term, and the ``policy`` actor that
executes the subgoal generator's proposal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_subgoals import FRAMES, data_dir, frame, read_metrics, subgoal_config  # noqa: F401

import sim
import world_model
from jepa_mpc.collect import collect
from planner import Planner, load_planner_config
from planner.planner import intent
from robots.config import ConfigError
from sim.experts import EXACT, LEARNER, expert_action, pick_action
from world_model.dagger_data import label_targets
from world_model.data import DatasetError, TrajectoryReader, TrajectoryWriter
from world_model.train import train


def test_labelled_episodes_round_trip_in_their_own_chunks(tmp_path) -> None:
    frames, states = np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 7), np.float32)
    labels, goal = np.full((3, 7), 0.5, np.float32), np.full((8, 8, 3), 7, np.uint8)
    with TrajectoryWriter(tmp_path, episodes_per_chunk=4) as writer:
        writer.add_episode(frames, states, task="reach")
        writer.add_episode(frames, states, task="push", expert_actions=labels, goal_frame=goal)
        writer.add_episode(frames, states, task="push", expert_actions=labels, goal_frame=goal)
        with pytest.raises(DatasetError, match="come together"):
            writer.add_episode(frames, states, expert_actions=labels)
        with pytest.raises(DatasetError, match=r"goal_frame is uint8 \(4, 8, 3\)"):
            writer.add_episode(frames, states, expert_actions=labels, goal_frame=goal[:4])
    chunks = json.loads((tmp_path / "meta.json").read_text())["chunks"]
    assert [chunk.get("expert_actions", False) for chunk in chunks] == [False, True]
    reader = TrajectoryReader(tmp_path)
    plain, labelled = reader.episode(0), reader.episode(2)
    assert plain.expert_actions is None and plain.goal_frame is None
    np.testing.assert_array_equal(labelled.expert_actions, labels)
    np.testing.assert_array_equal(labelled.goal_frame, goal)


def test_the_relabelling_expert_slides_where_the_collector_rises() -> None:
    """A hand 1.2 cm beside the cube and 4 cm above its grasp height: the collector's expert
    (8 mm alignment) rises to travel, the relabelling one descends onto it (within 1.5 cm)."""
    env = sim.make("grasp", image_size=32, seed=1_000_000)
    env.reset(seed=1_000_000)
    task = env.unwrapped.task
    cube = env.unwrapped.backend.cube_pose()[:3]
    ee = np.array([cube[0] + 0.012, cube[1], cube[2] + 0.045, *task.home[3:6], 0.0])
    assert pick_action(task, ee, cube, False, EXACT)[2] > 0
    assert pick_action(task, ee, cube, False, LEARNER)[2] < 0
    ee[0] = cube[0] + 0.025  # beyond alignment, within correct_low: slide at this height
    sideways = pick_action(task, ee, cube, False, LEARNER)
    assert sideways[0] < 0 and sideways[2] == pytest.approx(0.0, abs=1e-6)
    env.close()


@pytest.mark.parametrize("task", ["pick_place", "push"])
def test_the_relabelling_expert_still_solves_its_tasks(task) -> None:
    env = sim.make(task, image_size=32, seed=1_000_001)
    env.reset(seed=1_000_001)
    for _ in range(env.unwrapped.episode_length):
        _, _, _, _, info = env.step(expert_action(env, tolerance=LEARNER))
    env.close()
    assert info["success"]


def test_collect_with_a_planner_labels_every_frame(tmp_path) -> None:
    out = tmp_path / "dagger"
    summary = collect(
        out,
        ["grasp"],
        2,
        workers=1,
        progress=False,
        image_size=64,
        steps=3,
        planner="icem",
        model="random:tiny",
        overrides=("actor.samples=8", "actor.iterations=1", "actor.elites=2"),
        expert_share=0.5,
    )
    assert summary["planner"] == 2 and summary["episodes"] == 2
    reader = TrajectoryReader(out)
    assert reader.meta["info"]["dagger"]["expert_share"] == 0.5
    env = sim.make("grasp", image_size=64, seed=reader.meta["info"]["seed"] + 1)
    env.reset(seed=reader.meta["info"]["seed"] + 1)
    first_label = expert_action(env, tolerance=LEARNER)
    goal = env.unwrapped.goal()["image"]
    env.close()
    episode = reader.episode(1)
    assert episode.expert_actions.shape == (4, 7) and episode.goal_frame.shape == (64, 64, 3)
    np.testing.assert_allclose(episode.expert_actions[0], first_label, atol=1e-6)
    np.testing.assert_array_equal(episode.goal_frame, goal)
    with pytest.raises(ValueError, match="--planner needs --model"):
        collect(out, ["grasp"], 1, workers=1, progress=False, planner="icem")
    with pytest.raises(ValueError, match="expert-share"):
        collect(out, ["grasp"], 1, planner="icem", model="random:tiny", expert_share=2.0)


def test_label_targets_move_by_the_expert_and_read_its_gripper_as_an_intent() -> None:
    states = np.array([[0.4, 0.0, 0.2, np.pi, 0, 0, 0.375], [0.4, 0.0, 0.2, np.pi, 0, 0, 0.0]])
    actions = np.array([[0.01, -0.02, 0.03, 0, 0, 0, -1.0], [0, 0, -0.05, 0, 0, 0, 1.0]])
    targets = label_targets(states.astype(np.float32), actions.astype(np.float32))
    np.testing.assert_allclose(targets[:, :3], [[0.41, -0.02, 0.23], [0.4, 0.0, 0.15]], atol=1e-6)
    np.testing.assert_allclose(targets[:, 3:6], states[:, 3:6])
    assert targets[:, 6].tolist() == [0.0, 1.0]


@pytest.fixture(scope="module")
def dagger_dir(tmp_path_factory) -> Path:
    """Toy DAgger episodes: the hand wandered to x in [0.3, 0.5]; the expert says +3 cm, the
    goal image shows the hand at 0.55."""
    root = tmp_path_factory.mktemp("dagger_data")
    rng = np.random.default_rng(1)
    with TrajectoryWriter(root, episodes_per_chunk=4) as writer:
        for _ in range(6):
            states = np.zeros((FRAMES, 7), np.float32)
            states[:, 0] = rng.uniform(0.3, 0.5, FRAMES)
            states[:, 2], states[:, 3] = 0.2, np.pi
            labels = np.zeros((FRAMES, 7), np.float32)
            labels[:, 0], labels[:, 6] = 0.03, -1.0
            frames = np.stack([frame(x) for x in states[:, 0]])
            writer.add_episode(
                frames, states, task="reach", expert_actions=labels, goal_frame=frame(0.55)
            )
    return root


def test_the_subgoal_stage_fits_the_dagger_labels(
    data_dir,  # noqa: F811 (the fixture of test_subgoals)
    dagger_dir,
    tmp_path,
) -> None:
    out = tmp_path / "run"
    train(
        "subgoals",
        subgoal_config(
            data_dir,
            out,
            "steps=150",
            f"subgoals.dagger_data=[{dagger_dir}]",
            "subgoals.dagger_weight=1.0",
        ),
    )
    rows = read_metrics(out)
    assert np.mean([r["dagger_l1"] for r in rows[-3:]]) < 0.5 * rows[0]["dagger_l1"]
    assert (out / "subgoal_dagger_latents.pt").is_file()
    model = world_model.load(out / "model")
    state = torch.tensor([[0.42, 0.0, 0.2, np.pi, 0.0, 0.0, 0.0]])
    latent, goal = model.encode(frame(0.42)[None]), model.encode(frame(0.55)[None])
    _, proposed = model.propose_subgoal(latent, state, goal, 1)
    assert float(proposed[0, 0] - state[0, 0]) == pytest.approx(0.03, abs=0.012)
    with pytest.raises(ConfigError, match="no expert labels"):
        train(
            "subgoals",
            subgoal_config(data_dir, tmp_path / "bad", f"subgoals.dagger_data=[{data_dir}]"),
        )


def test_the_policy_actor_executes_the_subgoal_proposal() -> None:
    """With an untrained generator (it proposes the current state) the policy actor holds the
    hand and commands the gripper intent fully; it needs a policy and the hierarchical mode."""
    model = world_model.build("tiny", seed=0)
    model.add_subgoals(hidden=16, depth=1, heads=2, max_ahead=2)
    planner = Planner(
        load_planner_config(
            "icem", ["actor.name=policy", "actor.policy=subgoals", "subgoal_ahead=1"]
        ),
        model,
        "cpu",
    )
    for gripper, command in ((0.0, 0.0), (0.375, 0.625)):  # open: stay open; closed: close
        state = np.array([0.4, 0.0, 0.2, np.pi, 0.0, 0.0, gripper], np.float32)
        plan = planner.plan({"image": frame(0.4), "state": state}, {"image": frame(0.5)})
        np.testing.assert_allclose(plan.action[:6], 0.0, atol=1e-6)
        assert plan.action[6] == pytest.approx(command, abs=1e-6)  # the safety filter clips
        assert plan.evaluations == 1
    with pytest.raises(ConfigError, match="needs the hierarchical mode"):
        load_planner_config("icem", ["actor.policy=subgoals"])
    with pytest.raises(ConfigError, match="set actor.policy"):
        load_planner_config("icem", ["actor.name=policy"])
    closing = intent(torch.tensor([[0, 0, 0, 0, 0, 0, 0.2]]), torch.zeros(1, 7))
    assert closing[0, 6] == 1.0


def test_the_dagger_recipe_refuses_bad_requests_in_one_line(tmp_path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "subgoals_dagger.py"
    base = [sys.executable, str(script), "--work", str(tmp_path), "--init", "x", "--data", "y"]
    for extra, message in (
        (["--stages", "rounds,deploy"], "unknown stages ['deploy']"),
        (["--rounds", "0"], "--rounds and --episodes must be >= 1"),
    ):
        result = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert message in result.stderr.strip().splitlines()[-1]


def test_sim_small_v2_ships_a_generator_that_subgoal_policy_plans_with() -> None:
    """The bundled two-view model carries its subgoal generator; `subgoal_policy` plans one
    step of a pick-and-place from the final goal image with it, in the bounds."""
    planner = Planner.from_config("subgoal_policy", "sim-small-v2", "cpu", ["cpu_threads=1"])
    assert planner.world_model.config.subgoals.enabled
    env = sim.make("pick_place", image_size=128, seed=10_000, cameras="exterior,wrist")
    obs, _ = env.reset(seed=10_000)
    goal = env.unwrapped.goal()
    env.close()
    plan = planner.plan(obs, goal)
    assert plan.evaluations == 1 and np.isfinite(plan.energy)
    assert np.abs(plan.action[:3]).sum() <= 0.075 + 1e-6 and plan.action[2] < 0  # descends


def test_the_dagger_cache_encodes_each_dataset_once(dagger_dir, tmp_path, monkeypatch) -> None:
    import world_model.dagger_data as dagger_data

    model = world_model.build("tiny", seed=0)
    cache_file = tmp_path / "dagger.pt"
    first = dagger_data.load_or_build_labelled(model, [str(dagger_dir)], 16, cache_file, False)
    assert len(first.goals) == 6 and len(first.states) == 6 * FRAMES

    def refuse(*args, **kwargs):
        raise AssertionError("a cached dataset was encoded again")

    monkeypatch.setattr(dagger_data, "build_labelled", refuse)
    twice = dagger_data.load_or_build_labelled(model, [str(dagger_dir)] * 2, 16, cache_file, False)
    torch.testing.assert_close(twice.latents[: len(first.latents)], first.latents)
    assert twice.goal_of.tolist() == first.goal_of.tolist() + (first.goal_of + 6).tolist()
