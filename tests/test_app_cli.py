"""``jepa-mpc render``, ``bench-env`` and ``presets`` run end to end and write their outputs."""

from __future__ import annotations

import json

import imageio.v2 as imageio

from jepa_mpc import bench_env, render


def test_render_writes_reset_goal_and_subgoal_pngs(tmp_path):
    assert render.main(["--task", "pick_place", "--out", str(tmp_path), "--size", "32"]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    subgoals = [f"pick_place_subgoal_{index}.png" for index in range(7)]
    assert names == ["pick_place_goal.png", "pick_place_reset.png", *subgoals]
    assert imageio.imread(tmp_path / "pick_place_goal.png").shape == (32, 32, 3)


def test_bench_env_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--backends", "mujoco,nonexistent", "--sizes", "32", "--steps", "2", "--renders", "2"]
    code = bench_env.main([*argv, "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [row["backend"] for row in rows] == ["mujoco"] and rows[0]["renders_per_s"] > 0
    assert "nonexistent" in capsys.readouterr().out
