"""``jepa-mpc bench``: outputs written, same seeds across methods, baselines behave, the planner
on the ground-truth-state model beats random on reach, Wilson intervals, bad requests."""

from __future__ import annotations

import json
import math

import imageio.v2 as imageio
import numpy as np
import pytest

from jepa_mpc import bench, bench_merge
from jepa_mpc.bench_config import BenchError
from jepa_mpc.bench_episodes import PlannerPolicy
from jepa_mpc.bench_report import wilson_interval
from planner.inputs import PlanInputError
from robots.config import ConfigError

SMALL = ["--image-size", "64", "--episodes", "2", "--device", "cpu"]
PLANNER_OVERRIDES = ["actor.samples=32", "actor.iterations=3", "actor.elites=4"]


@pytest.fixture(scope="module")
def reach_run(tmp_path_factory):
    """One small reach benchmark: random, expert and iCEM on the state model, 8 steps."""
    out = tmp_path_factory.mktemp("bench") / "reach"
    argv = ["--tasks", "reach", "--planners", "icem", "--models", "state", "--steps", "8"]
    assert bench.main([*argv, *SMALL, "--out", str(out), *PLANNER_OVERRIDES]) == 0
    return out, json.loads((out / "results.json").read_text())


def _row(results: dict, method: str) -> dict:
    return next(row for row in results["rows"] if row["method"] == method)


def test_outputs_are_written(reach_run, capsys):
    out, results = reach_run
    names = {path.name for path in out.iterdir()}
    assert {"results.json", "results.md", "success.png", "planning_time.png"} <= names
    assert not [name for name in names if name.startswith(".")]  # no temp files left
    assert [row["method"] for row in results["rows"]] == ["random", "expert", "icem@state"]
    table = (out / "results.md").read_text()
    assert "| reach | icem@state | " in table and "95 % CI" in table
    for name in ("success.png", "planning_time.png"):
        image = imageio.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100


def test_same_seeds_starts_and_goals_across_methods(reach_run):
    _, results = reach_run
    by_method: dict[str, list] = {}
    for episode in results["episodes"]:
        by_method.setdefault(episode["method"], []).append(episode)
    assert set(by_method) == {"random", "expert", "icem@state"}
    reference = by_method["expert"]
    for episodes in by_method.values():
        assert [e["seed"] for e in episodes] == [10_000, 10_001]
        assert all(e["steps"] == 8 for e in episodes)
        for episode, ref in zip(episodes, reference, strict=True):
            np.testing.assert_allclose(episode["start_state"], ref["start_state"], atol=1e-6)
            np.testing.assert_allclose(episode["goal_state"], ref["goal_state"], atol=1e-6)
    # Different seeds give different goals.
    assert not np.allclose(reference[0]["goal_state"], reference[1]["goal_state"])


def test_expert_succeeds_and_beats_random_and_the_planner_gets_closer(reach_run):
    _, results = reach_run
    random, expert, planner = (_row(results, m) for m in ("random", "expert", "icem@state"))
    assert expert["success_rate"] == 1.0 and random["success_rate"] == 0.0
    assert expert["distance_mean"] < random["distance_mean"]
    assert planner["distance_mean"] < 0.5 * random["distance_mean"]
    assert random["plan_s_median"] is None and random["evaluations_per_action"] is None
    assert planner["plan_s_p90"] >= planner["plan_s_median"] > 0
    assert planner["evaluations_per_action"] > 0


def test_wilson_interval_matches_the_closed_form():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.27753, abs_tol=1e-5)
    low, high = wilson_interval(5, 10)
    assert math.isclose(low, 0.23659, abs_tol=1e-5) and math.isclose(high, 0.76341, abs_tol=1e-5)
    low, high = wilson_interval(10, 10)
    assert math.isclose(low, 0.72247, abs_tol=1e-5) and high == 1.0
    low, high = wilson_interval(45, 50)
    assert math.isclose(low, 0.78640, abs_tol=1e-5) and math.isclose(high, 0.95652, abs_tol=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_state_model_planner_picks_up_the_cube(tmp_path):
    """The ground-truth-state baseline solves grasp on its subgoal states (fixed schedule)."""
    out = tmp_path / "grasp"
    argv = ["--tasks", "grasp", "--planners", "icem", "--models", "state", "--baselines", "none"]
    argv += ["--episodes", "1", "--image-size", "32", "--device", "cpu", "--out", str(out)]
    assert bench.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["rows"][0]["success_rate"] == 1.0
    assert results["subgoal_schedules"]["grasp"] == [13, 6, 3, 8]


def test_image_model_planner_and_pick_place_videos(tmp_path):
    """The tiny V-JEPA 2-AC fixture plans from images alone; pick_place runs its subgoals."""
    out = tmp_path / "pp"
    argv = ["--tasks", "pick_place", "--planners", "cem_paper", "--baselines", "none"]
    argv += ["--models", "tests/data/vjepa2_ac_tiny.pt#tiny", "--steps", "3", "--videos"]
    assert bench.main([*argv, *SMALL, "--out", str(out), *PLANNER_OVERRIDES]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in results["rows"]] == ["cem_paper@vjepa2_ac_tiny"]
    videos = sorted((out / "videos").iterdir())
    assert len(videos) == 2
    frames = imageio.mimread(videos[0])
    assert len(frames) == 4 and frames[0].shape[:2] == (64, 128)  # reset + 3 steps; goal beside


def _reach_lines(text: str) -> list[str]:
    """The progress lines without their timing (everything up to the distance)."""
    return [line.partition(" m")[0] for line in text.splitlines() if line.startswith("[reach")]


def test_batched_episodes_match_the_sequential_run(tmp_path, capsys):
    """3 episodes in lanes of 2 (one full group, one of 1) give the sequential records."""
    argv = ["--tasks", "reach", "--planners", "icem", "--models", "state", "--steps", "6"]
    argv += ["--baselines", "random", "--episodes", "3", "--image-size", "32", "--device", "cpu"]
    runs, lines = {}, {}
    for lanes in (1, 2):
        out = tmp_path / f"lanes{lanes}"
        flags = ["--batch-episodes", str(lanes), "--out", str(out)]
        assert bench.main([*argv, *flags, *PLANNER_OVERRIDES]) == 0
        runs[lanes] = json.loads((out / "results.json").read_text())
        lines[lanes] = _reach_lines(capsys.readouterr().out)
    sequential, batched = runs[1], runs[2]
    assert sequential["execution"] == "sequential episodes, one env per task"
    assert "2 lock-step lanes, merged rollouts" in batched["execution"]
    assert batched["config"]["batch_episodes"] == 2
    assert lines[2] == lines[1] and len(lines[1]) == 6
    assert [row["method"] for row in batched["rows"]] == ["random", "icem@state"]
    for one, other in zip(sequential["episodes"], batched["episodes"], strict=True):
        assert set(other) == set(one)
        for key in ("method", "seed", "success", "steps", "evaluations", "goal_state"):
            assert other[key] == one[key], key
        assert other["distance"] == pytest.approx(one["distance"], abs=1e-5)
        assert len(other["plan_s"]) == len(one["plan_s"])
    planner_rows = [row for row in batched["rows"] if row["method"] == "icem@state"]
    assert planner_rows[0]["distance_mean"] < _row(batched, "random")["distance_mean"]


def test_readout_planner_runs_in_lock_step_lanes_like_one_after_another(tmp_path):
    """icem_readout needs the model's state readout; a lane model forwards it, so the batched
    run plans like the sequential one (it used to be refused: "LaneModel has none")."""
    argv = ["--tasks", "reach", "--planners", "icem_readout", "--models", "state"]
    argv += ["--baselines", "none", "--episodes", "2", "--steps", "2", "--image-size", "32"]
    runs = {}
    for lanes in (1, 2):
        out = tmp_path / f"lanes{lanes}"
        flags = ["--batch-episodes", str(lanes), "--device", "cpu", "--out", str(out)]
        assert bench.main([*argv, *flags, *PLANNER_OVERRIDES]) == 0
        runs[lanes] = json.loads((out / "results.json").read_text())
    assert "2 lock-step lanes" in runs[2]["execution"]
    assert [row["method"] for row in runs[2]["rows"]] == ["icem_readout@state"]
    for one, other in zip(runs[1]["episodes"], runs[2]["episodes"], strict=True):
        assert other["evaluations"] == one["evaluations"] and other["seed"] == one["seed"]
        assert other["distance"] == pytest.approx(one["distance"], abs=1e-5)


@pytest.mark.parametrize(
    ("flag", "value", "error", "words"),
    [
        ("--tasks", "reach,fly", BenchError, "fly"),
        ("--planners", "nosuchplanner", FileNotFoundError, "nosuchplanner"),
        ("--models", "no/such/model.pt", FileNotFoundError, "no/such/model.pt"),
        ("--baselines", "oracle", BenchError, "oracle"),
        ("--episodes", "0", BenchError, "episodes"),
        ("--batch-episodes", "0", BenchError, "batch_episodes must be >= 1"),
        ("--seed", "999999", BenchError, "training scenes"),
    ],
)
def test_bad_requests_raise_and_write_nothing(tmp_path, capsys, flag, value, error, words):
    out = tmp_path / "out"
    config, _ = bench.parse_args([flag, value, "--out", str(out), *SMALL[:2]])
    with pytest.raises(error, match=words.replace(".", r"\.")):
        bench.run_benchmark(config, out)
    assert bench.main([flag, value, "--out", str(out), *SMALL[:2]]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_bad_planner_override_is_a_config_error(tmp_path):
    config, out = bench.parse_args(["--out", str(tmp_path / "o"), "actor.nonsense=1"])
    with pytest.raises(ConfigError, match="nonsense"):
        bench.run_benchmark(config, out)
    assert not out.exists()


def test_config_file_and_flags(tmp_path):
    config, _ = bench.parse_args(["--config", "cpu_small", "--episodes", "3", "--out", "x"])
    assert config.tasks == ("reach", "grasp") and config.planners == ("cem_paper", "icem")
    assert config.episodes == 3 and config.image_size == 64
    path = tmp_path / "b.yaml"
    path.write_text("tasks: [reach]\nepisodes: 2\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        bench.parse_args(["--config", str(path), "--out", "x"])


def test_state_model_goal_needs_its_state():
    """The state model sees the goal state; an image model must not (no oracle)."""
    from planner import Planner
    from world_model.state_model import StateWorldModel

    planner = Planner.from_config("icem", StateWorldModel(), "cpu", PLANNER_OVERRIDES)
    policy = PlannerPolicy(planner, goal_state=False)
    obs = {"image": np.zeros((32, 32, 3), np.uint8), "state": np.zeros(7, np.float32)}
    obs["state"][:3] = (0.5, 0.0, 0.3)
    with pytest.raises((PlanInputError, ValueError), match="state"):
        policy.act(None, obs, {"image": obs["image"], "state": obs["state"]})


def _baseline_shard(out, seed: int, episodes: int, *extra: str) -> None:
    argv = ["--tasks", "reach", "--baselines", "random,expert", "--planners", "none"]
    argv += ["--models", "none", "--image-size", "32", "--device", "cpu", "--steps", "4"]
    argv += ["--seed", str(seed), "--episodes", str(episodes), "--out", str(out), *extra]
    assert bench.main(argv) == 0


def test_merged_shards_report_like_one_run(tmp_path):
    _baseline_shard(tmp_path / "all", 0, 3)
    _baseline_shard(tmp_path / "b", 1, 2)
    _baseline_shard(tmp_path / "a", 0, 1)
    merged_out = tmp_path / "merged"
    argv = [str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(merged_out)]
    assert bench_merge.main(argv) == 0
    merged = json.loads((merged_out / "results.json").read_text())
    whole = json.loads((tmp_path / "all" / "results.json").read_text())
    assert merged["config"]["seed"] == 0 and merged["config"]["episodes"] == 3
    assert [e["seed"] for e in merged["episodes"]] == [0, 1, 2, 0, 1, 2]
    assert len(merged["shards"]) == 2 and "--seed 1" in merged["shards"][0]
    for row, reference in zip(merged["rows"], whole["rows"], strict=True):
        for key in ("task", "method", "episodes", "successes", "success_ci95", "distance_mean"):
            assert row[key] == pytest.approx(reference[key]), key
    assert "Merged from:" in (merged_out / "results.md").read_text()


def test_merge_refuses_shards_that_do_not_fit(tmp_path, capsys):
    _baseline_shard(tmp_path / "a", 0, 2)
    _baseline_shard(tmp_path / "overlap", 1, 2)
    _baseline_shard(tmp_path / "gap", 3, 1)
    _baseline_shard(tmp_path / "other", 2, 1, "--image-size", "48")
    out = tmp_path / "merged"
    cases = {
        "overlap": "overlap",
        "gap": "leave a gap",
        "other": "image_size",
        "missing": "not found",
    }
    for shard, message in cases.items():
        assert (
            bench_merge.main([str(tmp_path / "a"), str(tmp_path / shard), "--out", str(out)]) == 2
        )
        assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written
    with pytest.raises(bench_merge.MergeError, match="at least two"):
        bench_merge.merge([tmp_path / "a"])


def test_the_configurator_plans_each_task_with_its_own_preset(tmp_path):
    """``--task-planners`` (the configurator's per-task choice) replaces ``--planners`` for the
    tasks it names; the others keep ``--planners``; bad entries are one clear error."""
    out = tmp_path / "b"
    argv = ["--tasks", "reach,grasp", "--planners", "cem_paper", "--models", "state"]
    argv += ["--task-planners", "reach=icem", "--baselines", "", "--steps", "2", *SMALL]
    assert bench.main([*argv, "--out", str(out), *PLANNER_OVERRIDES]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(row["task"], row["method"]) for row in results["rows"]] == [
        ("reach", "icem@state"),
        ("grasp", "cem_paper@state"),
    ]
    assert results["config"]["task_planners"] == {"reach": "icem"}
    for text, words in [("reach", "not TASK=PRESET"), ("reach=icem,reach=gd", "reach twice")]:
        with pytest.raises(BenchError, match=words):
            bench.parse_args(["--task-planners", text, "--out", "x"])
    config, _ = bench.parse_args(["--task-planners", "fly=icem", "--out", str(tmp_path / "n")])
    with pytest.raises(BenchError, match="fly"):
        bench.run_benchmark(config, tmp_path / "n")
    config, _ = bench.parse_args(["--config", "one_goal", "--out", "x"])
    assert config.task_planners["push"] == "keypoint_policy" and config.subgoals == ()
