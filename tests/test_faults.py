"""Faults: a training run SIGKILLed mid-run resumes from its last complete checkpoint (losing at
most one interval, leaving no temp files); a torn newest checkpoint is skipped for the previous
one; the ROS goal planner holds while the sim node is gone and plans again when it returns."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from world_model.train import load_train_config, train
from world_model.train_loop import Checkpointer

REPO = Path(__file__).resolve().parents[1]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fault_train_kill = _load_script("fault_train_kill")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    """Two recorded 6-step MuJoCo reach episodes at 64 px."""
    return fault_train_kill.collect_toy_data(tmp_path_factory.mktemp("faults") / "data")


def test_training_survives_sigkill(toy_data, tmp_path) -> None:
    steps, every = 8, 2
    trial = fault_train_kill.run_trial(
        toy_data, tmp_path / "run", steps, every, np.random.default_rng(1), None, timeout_s=300.0
    )
    assert trial["passed"], trial
    killed = trial["killed"]
    assert killed["returncode"] == -9 and killed["checkpoints"]
    assert trial["resumed_from"] == max(killed["readable_checkpoints"])
    assert 0 <= trial["lost_steps"] <= every
    assert fault_train_kill.logged_steps(tmp_path / "run") == list(range(1, steps + 1))
    assert fault_train_kill.temp_files(tmp_path / "run") == []
    world_model.load(tmp_path / "run" / "model")


def test_truncated_newest_checkpoint_is_skipped_for_the_previous(toy_data, tmp_path) -> None:
    out = tmp_path / "run"

    def config(*overrides: str):
        options = [f"data.root={toy_data}", f"out={out}", "steps=6", "device=cpu", *overrides]
        return load_train_config("predictor_tiny", options)

    train("predictor", config("halt_after=4"))  # checkpoints at steps 2 and 4
    checkpoints = Checkpointer(out)
    assert checkpoints.steps() == [2, 4]
    newest = checkpoints.path(4)
    with open(newest, "r+b") as handle:  # a save cut short: half the bytes
        handle.truncate(newest.stat().st_size // 2)
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*step-00000004"):
        assert checkpoints.load_latest(torch.device("cpu"))["step"] == 2
    with pytest.warns(UserWarning, match="step-00000004"):
        train("predictor", config())  # resumes from step 2 and finishes
    assert fault_train_kill.logged_steps(out) == list(range(1, 7))
    assert checkpoints.steps() == [4, 6]
    assert checkpoints.load_latest(torch.device("cpu"))["step"] == 6
    assert torch.load(checkpoints.path(4), weights_only=True)["step"] == 4  # rewritten whole
    world_model.load(out / "model")


def test_interrupted_save_leftovers_are_removed(tmp_path) -> None:
    checkpoints = Checkpointer(tmp_path)
    checkpoints.save({"step": 2}, 2)
    partial = checkpoints.folder / ".step-00000004.pt.k3j9x2.tmp"  # as a SIGKILL leaves it
    partial.write_bytes(b"PK\x03\x04 half a zip")
    unrelated = checkpoints.folder / "notes.txt"
    unrelated.write_text("keep me")
    with pytest.warns(UserWarning, match="partial checkpoint .*step-00000004"):
        assert checkpoints.load_latest(torch.device("cpu")) == {"step": 2}
    assert not partial.exists() and unrelated.exists()
    assert checkpoints.steps() == [2]


# -- long runs: the soak script and its verdict ---------------------------------------------------


def test_sim_soak_runs_and_reports(tmp_path, capsys) -> None:
    from jepa_mpc.cli import main as cli

    out = tmp_path / "soak.json"
    argv = ["soak", "--steps", "24", "--warmup", "4", "--image-size", "32", "--out", str(out)]
    argv += ["--plot", str(tmp_path / "soak.png"), "actor.samples=16", "actor.iterations=2"]
    code = cli(argv)
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert code == (0 if all(summary["passed"].values()) else 1)
    assert len(result["series"]["rss_mb"]) == len(result["series"]["plan_ms"]) == 24
    assert summary["episodes"] >= 2  # reach episodes are 20 steps: one reset at least
    assert summary["memory"]["warmup_mb"] > 10 and (tmp_path / "soak.png").stat().st_size > 1000
    assert "RSS growth" in capsys.readouterr().out
    assert cli(["soak", "--steps", "5", "--out", str(tmp_path / "bad.json")]) == 2
    assert "--steps" in capsys.readouterr().err and not (tmp_path / "bad.json").exists()


def test_soak_verdict_catches_a_leak_and_a_drift() -> None:
    from planner.soak_metrics import judge, memory_growth, trend

    steps = np.arange(1000)
    flat = memory_growth(600.0 + 0.5 * np.sin(steps), warmup=100)
    leaking = memory_growth(600.0 + 0.05 * steps, warmup=100)  # +45 MiB after warm-up
    steady = trend(steps / 1000, 20.0 + np.random.default_rng(0).normal(0, 1, 1000))
    drifting = trend(steps / 1000, 20.0 + 0.02 * steps)
    assert judge(flat, steady, 5.0, 25.0) == {"rss_growth": True, "latency_drift": True}
    assert judge(leaking, steady, 5.0, 25.0)["rss_growth"] is False
    assert leaking["growth_pct"] == pytest.approx(100 * 0.05 * 900 / 604.95)
    assert judge(flat, drifting, 5.0, 25.0)["latency_drift"] is False
    assert drifting["slope"] == pytest.approx(20.0) and drifting["change_pct"] == pytest.approx(
        100 * 18 / 20.99
    )


# -- ROS: the planner node survives the sim node restarting --------------------------------------

DOMAIN_ID = 215 + os.getpid() % 9  # 215..223: unique-ish per process, clear of other modules
SIM_PARAMS = {"image_size": 32, "rate_hz": 20.0, "seed": 3}
PLANNER_PARAMS = {
    "checkpoint": "state",
    "config": "cem_paper",
    "device": "cpu",
    "planner_overrides": ["actor.samples=64", "actor.elites=8", "actor.iterations=3"],
    "rate_hz": 10.0,
    "watchdog_s": 1.0,
    "resync_s": 1.0,  # the new sim's arm starts at home: re-anchor there (as goal_planner.yaml)
}
LIVENESS_S = 60.0  # generous: CI has 2 slow shared cores


class DiagnosticsProbe:
    """Records the goal planner's diagnostics modes, in order."""

    def __init__(self, context) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = rclpy.create_node("fault_probe", context=context)
        self.lock = threading.Lock()
        self.entries: list[dict[str, str]] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_diag(self, msg) -> None:
        mine = [s for s in msg.status if s.name == "/goal_planner"]
        with self.lock:
            self.entries += [
                {"message": s.message, **{v.key: v.value for v in s.values}} for s in mine
            ]

    def count(self) -> int:
        with self.lock:
            return len(self.entries)

    def wait_mode(self, mode: str, start: int, timeout_s: float = LIVENESS_S) -> dict[str, str]:
        """The first entry with ``mode`` at index >= ``start`` (fails after ``timeout_s``)."""
        from planner_ros.runtime import wait_for

        def found() -> dict[str, str] | None:
            with self.lock:
                return next((e for e in self.entries[start:] if e.get("mode") == mode), None)

        assert wait_for(found, timeout_s, poll_s=0.05), f"no {mode!r} diagnostics"
        return found()


@pytest.fixture()
def ros_context():
    pytest.importorskip("rclpy", reason="ROS 2 rclpy is not installed (pip install -e .[ros])")
    import rclpy
    from planner_ros.runtime import init_context

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
        patch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        context = init_context(DOMAIN_ID)
        try:
            yield context
        finally:
            rclpy.shutdown(context=context)


def test_planner_survives_sim_restart(ros_context) -> None:
    from planner_ros.goal_planner import GoalPlannerNode
    from planner_ros.mujoco_franka import MujocoFrankaNode
    from planner_ros.runtime import as_parameters, spin_nodes, wait_for

    def make_sim():
        return MujocoFrankaNode(context=ros_context, parameter_overrides=as_parameters(SIM_PARAMS))

    planner = GoalPlannerNode(
        context=ros_context, parameter_overrides=as_parameters(PLANNER_PARAMS)
    )
    probe = DiagnosticsProbe(ros_context)
    sim = make_sim()
    alive = [planner, probe.node, sim]
    try:
        with spin_nodes(ros_context, alive) as spinner:
            probe.wait_mode("planning", 0)
            assert wait_for(lambda: sim.info.get("step", 0) >= 1, LIVENESS_S), sim.info

            # The sim node goes away: no images, no poses. The planner must hold, not crash.
            spinner.executor.remove_node(sim)
            alive.remove(sim)
            sim.destroy_node()
            gone = probe.count()
            hold = probe.wait_mode("hold", gone)
            assert "watchdog" in hold["message"] and "old" in hold["message"]

            # A new sim node comes up: planning resumes and its commands move the new arm.
            sim = make_sim()
            alive.append(sim)
            spinner.executor.add_node(sim)
            back = probe.count()
            planning = probe.wait_mode("planning", back)
            assert float(planning["plan_ms"]) > 0
            assert wait_for(lambda: sim.info.get("step", 0) >= 2, LIVENESS_S), sim.info
            with probe.lock:
                modes = [e.get("mode") for e in probe.entries]
            assert "error" not in modes
    finally:
        for node in alive:
            node.destroy_node()
