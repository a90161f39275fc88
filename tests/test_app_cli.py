"""``jepa-mpc render``, ``bench-env`` and ``presets`` run end to end and write their outputs."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from jepa_mpc import bench_env, presets, render
from robots.config import list_presets


def test_render_writes_reset_goal_and_subgoal_pngs(tmp_path):
    assert render.main(["--task", "pick_place", "--out", str(tmp_path), "--size", "32"]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    subgoals = [f"pick_place_subgoal_{index}.png" for index in range(7)]
    assert names == ["pick_place_goal.png", "pick_place_reset.png", *subgoals]
    assert imageio.imread(tmp_path / "pick_place_goal.png").shape == (32, 32, 3)
    assert {oct(path.stat().st_mode & 0o777) for path in tmp_path.iterdir()} == {"0o644"}


def test_bench_env_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--backends", "mujoco,nonexistent", "--sizes", "32", "--steps", "2", "--renders", "2"]
    code = bench_env.main([*argv, "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [row["backend"] for row in rows] == ["mujoco"] and rows[0]["renders_per_s"] > 0
    assert "nonexistent" in capsys.readouterr().out


def test_presets_lists_groups_keys_and_values(capsys):
    """``jepa-mpc presets``: every group with its presets; a group's keys with defaults (what a
    key=value override may set); one preset's values."""
    assert presets.main([]) == 0
    out = capsys.readouterr().out
    for group in ("bench", "model", "planner", "robot", "task", "train"):
        assert f"  {group} " in out
    assert ", ".join(list_presets("planner")) in out and "icem_readout" in out
    assert presets.main(["planner"]) == 0
    out = capsys.readouterr().out
    assert "actor.samples" in out and "int = 800" in out and "cost.readout_weights" in out
    assert presets.main(["planner", "icem"]) == 0
    values = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[1:])
    assert values["actor.name"] == "'icem'" and values["actor.samples"] == "128"


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["robots"], "unknown preset group 'robots'; known: bench"), (["task", "fly"], "fly")],
)
def test_presets_refuses_unknown_names(capsys, argv, words):
    assert presets.main(argv) == 2
    assert words in capsys.readouterr().err
