"""The planner's hot-path settings: precision and CPU threads apply while it plans and are
restored after (one model object may serve several planners), and bad values are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import world_model
from planner import Planner
from robots.config import ConfigError
from world_model.hot_path import (
    autocast_dtype,
    cpu_has_bf16,
    free_cores,
    running,
    thread_count,
    usable_cores,
)

START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)


class ObservedModel(world_model.WorldModel):
    """The tiny world model, noting the dtype and thread count each rollout ran with."""

    def rollout(self, z0, s0, actions):
        self.seen.append((self.autocast_dtype, torch.get_num_threads()))
        return super().rollout(z0, s0, actions)


def tiny() -> ObservedModel:
    model = world_model.build("tiny", seed=0)
    model.__class__ = ObservedModel
    model.seen = []
    return model


def test_precision_and_threads_hold_while_planning_and_are_restored():
    model = tiny()
    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1  # differs from the process's setting
    search = ["actor.samples=8", "actor.iterations=2"]
    overrides = ["precision=bf16", f"cpu_threads={threads}", *search]
    planner = Planner.from_config("icem", model, "cpu", overrides)
    image = np.zeros((64, 64, 3), np.uint8)
    planner.plan({"image": image, "state": START}, {"image": image})
    expected = torch.bfloat16 if cpu_has_bf16() else torch.float32
    assert set(model.seen) == {(expected, threads)}
    assert model.autocast_dtype is None and torch.get_num_threads() == before
    model.seen.clear()
    Planner.from_config("icem", model, "cpu", search).plan(
        {"image": image, "state": START}, {"image": image}
    )
    assert set(model.seen) == {(None, before)}  # the default leaves the model as it is


def test_running_restores_after_an_error_and_precisions_map_to_dtypes():
    model = tiny()
    with pytest.raises(RuntimeError), running(model, torch.float32, threads=1):
        assert model.autocast_dtype == torch.float32
        raise RuntimeError("search failed")
    assert model.autocast_dtype is None
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_dtype("bf16", cuda) == torch.bfloat16 and autocast_dtype("model", cpu) is None
    assert autocast_dtype("fp32", cuda) == torch.float32
    with pytest.raises(ConfigError, match="precision must be one of"):
        Planner.from_config("icem", model, "cpu", ["precision=fp16"])
    for bad in ("-1", "fast", "true", "1.5"):
        with pytest.raises(ConfigError, match="cpu_threads must be >= 0 .* or 'auto'"):
            Planner.from_config("icem", model, "cpu", [f"cpu_threads={bad}"])


@pytest.mark.parametrize(
    ("loadavg", "others"),
    [("0.10 0.20 0.30 1/97 4242\n", 0), ("1.9 1.6 2.0 3/94 25106\n", 2), ("2 2 2 9/94 1\n", 8)],
)
def test_free_cores_counts_the_runnable_threads_besides_the_reader(tmp_path, loadavg, others):
    path = tmp_path / "loadavg"
    path.write_text(loadavg)
    assert free_cores(path) == max(1, usable_cores() - others)


def test_free_cores_without_a_readable_loadavg_uses_every_core(tmp_path):
    assert free_cores(tmp_path / "missing") == usable_cores()
    (tmp_path / "odd").write_text("not a loadavg\n")
    assert free_cores(tmp_path / "odd") == usable_cores()


def test_auto_threads_decide_per_plan_and_restore_the_process_setting():
    model = tiny()
    before = torch.get_num_threads()
    search = ["actor.samples=8", "actor.iterations=2", "cpu_threads=auto"]
    planner = Planner.from_config("icem", model, "cpu", search)
    image = np.zeros((64, 64, 3), np.uint8)
    plan = planner.plan({"image": image, "state": START}, {"image": image})
    assert 1 <= plan.threads <= usable_cores()
    assert {threads for _, threads in model.seen} == {plan.threads}
    assert torch.get_num_threads() == before
    assert thread_count(3) == 3 and 1 <= thread_count("auto") <= usable_cores()


def test_bench_model_compares_threads_and_dtypes_side_by_side(tmp_path, capsys):
    from world_model import bench

    out = tmp_path / "compare.json"
    argv = ["--preset", "tiny", "--samples", "4", "--horizon", "1", "--compare"]
    assert bench.main([*argv, "--compare-threads", "1", "--rounds", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["threads"], r["dtype"], r["op"]) for r in rows} == {
        (1, dtype, op) for dtype in ("fp32", "bf16") for op in ("rollout", "encode")
    }
    assert (
        all(r["median_ms"] > 0 for r in rows)
        and "| 1 | bf16 | rollout |" in capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        bench.main([*argv, "--compare-dtypes", "fp16"])
    assert "expected some of bf16, fp32" in capsys.readouterr().err
