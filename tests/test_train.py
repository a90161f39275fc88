"""Training: predictor and encoder stages at toy size on synthetic trajectories; logs,
checkpoints, final model, exact resume, the loss functions, the CLI and a 2-process DDP run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_trajectories import write_square_trajectories

import world_model
from world_model.train import load_train_config, main, train
from world_model.train_loop import Checkpointer, MetricsLog, lr_at
from world_model.train_predictor import change_weights, predictor_losses, weighted_l1

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """4 toy episodes (``toy_trajectories``): a square that moves with the hand."""
    return write_square_trajectories(tmp_path_factory.mktemp("trajectories"), 4)


def config_for(name: str, data: Path, out: Path, *overrides: str):
    return load_train_config(name, [f"data.root={data}", f"out={out}", *overrides])


def read_losses(out: Path) -> dict[int, float]:
    with open(out / "metrics.csv", newline="") as handle:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(handle)}


def test_predictor_training_writes_logs_checkpoints_and_model(data_dir, tmp_path) -> None:
    out = tmp_path / "run"
    model_dir = train("predictor", config_for("predictor_tiny", data_dir, out))
    losses = read_losses(out)
    assert sorted(losses) == list(range(1, 7))
    assert losses[6] < 0.7 * losses[1]
    assert Checkpointer(out).steps() == [4, 6]
    assert (out / "loss.png").stat().st_size > 1000
    trained = world_model.load(model_dir)
    fresh = world_model.build("tiny", seed=0)
    torch.testing.assert_close(trained.encoder.state_dict(), fresh.encoder.state_dict())
    moved = [
        not torch.equal(a, b)
        for a, b in zip(trained.predictor.parameters(), fresh.predictor.parameters(), strict=True)
    ]
    assert sum(moved) == len(moved) - 2  # all but extrinsics_encoder weight and bias


def test_resume_matches_uninterrupted_run(data_dir, tmp_path) -> None:
    whole = tmp_path / "whole"
    train("predictor", config_for("predictor_tiny", data_dir, whole, "steps=5"))
    parts = tmp_path / "parts"
    train("predictor", config_for("predictor_tiny", data_dir, parts, "steps=5", "halt_after=3"))
    assert not (parts / "model").exists() and Checkpointer(parts).steps() == [2, 3]
    train("predictor", config_for("predictor_tiny", data_dir, parts, "steps=5"))
    assert read_losses(parts) == pytest.approx(read_losses(whole), rel=1e-6, abs=1e-7)
    a = world_model.load(whole / "model").state_dict()
    b = world_model.load(parts / "model").state_dict()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_corrupt_latest_checkpoint_falls_back(tmp_path) -> None:
    checkpoints = Checkpointer(tmp_path, keep=2)
    checkpoints.save({"step": 2}, 2)
    checkpoints.save({"step": 4}, 4)
    checkpoints.save({"step": 6}, 6)
    assert checkpoints.steps() == [4, 6]
    checkpoints.path(6).write_bytes(b"torn")
    with pytest.warns(UserWarning, match="step-00000006"):
        assert checkpoints.load_latest(torch.device("cpu"))["step"] == 4


def test_encoder_training_updates_target_encoder(data_dir, tmp_path) -> None:
    out = tmp_path / "enc"
    model_dir = train("encoder", config_for("encoder_tiny", data_dir, out, "steps=3"))
    assert sorted(read_losses(out)) == [1, 2, 3]
    assert all(np.isfinite(list(read_losses(out).values())))
    trained, fresh = world_model.load(model_dir), world_model.build("tiny", seed=0)
    torch.testing.assert_close(trained.predictor.state_dict(), fresh.predictor.state_dict())
    before = fresh.encoder.blocks[0].attn.qkv.weight
    assert not torch.equal(trained.encoder.blocks[0].attn.qkv.weight, before)
    latents = trained.encode(np.zeros((2, 64, 64, 3), np.uint8))
    assert latents.shape == (2, 16, 96) and torch.isfinite(latents).all()


def test_predictor_losses_rollout_consumes_predictions() -> None:
    model = world_model.build("tiny", seed=0)
    latents = torch.nn.functional.layer_norm(torch.randn(2, 4, 16, 96), (96,))
    actions, states = torch.randn(2, 4, 7) * 0.01, torch.rand(2, 4, 7)
    one = predictor_losses(model.predictor, latents, actions, states, rollout_steps=1)
    first = model.predictor(latents[:, :1], actions[:, :1], states[:, :1])
    expected = (torch.nn.functional.layer_norm(first, (96,)) - latents[:, 1:2]).abs().mean()
    torch.testing.assert_close(one["rollout"], expected)
    three = predictor_losses(model.predictor, latents, actions, states, rollout_steps=3)
    torch.testing.assert_close(three["teacher_forcing"], one["teacher_forcing"])
    # Frames 2 and 3 are predicted from the model's own (layer-normed) outputs.
    sequence = [latents[:, :1], torch.nn.functional.layer_norm(first, (96,))]
    for step in (1, 2):
        raw = model.predictor(torch.cat(sequence, 1), actions[:, : step + 1], states[:, : step + 1])
        sequence.append(torch.nn.functional.layer_norm(raw[:, -1:], (96,)))
    manual = (torch.cat(sequence[1:], 1) - latents[:, 1:4]).abs().mean()
    torch.testing.assert_close(three["rollout"], manual)
    three["rollout"].backward()
    assert model.predictor.predictor_embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="rollout_steps"):
        predictor_losses(model.predictor, latents, actions, states, rollout_steps=4)


def test_change_weights_put_the_loss_where_the_scene_moves() -> None:
    latents = torch.zeros(1, 3, 4, 8)
    latents[0, 1:, 2] = 1.0  # token 2 changes between frames 0 and 1, nothing else ever does
    weights = change_weights(latents, change_weight=3.0)
    assert change_weights(latents, 0.0) is None and weights.shape == (1, 2, 4)
    # change / mean change: token 2 at frame 1 is 8x the mean (1 of 8 tokens moved).
    torch.testing.assert_close(weights[0, 0], torch.tensor([1.0, 1.0, 25.0, 1.0]))
    torch.testing.assert_close(weights[0, 1], torch.ones(4))
    error = torch.zeros(1, 2, 4, 8)
    error[0, 0, 2] = 1.0  # the predictor misses the moving token only
    plain, weighted = weighted_l1(error, None), weighted_l1(error, weights)
    torch.testing.assert_close(plain, torch.tensor(1 / 8))
    torch.testing.assert_close(weighted, torch.tensor(25 / 32))  # 25 of 32 units of weight


def test_change_weighted_predictor_losses_differ_only_when_asked() -> None:
    model = world_model.build("tiny", seed=0)
    latents = torch.nn.functional.layer_norm(torch.randn(2, 4, 16, 96), (96,))
    actions, states = torch.randn(2, 4, 7) * 0.01, torch.rand(2, 4, 7)
    plain = predictor_losses(model.predictor, latents, actions, states, 2)
    same = predictor_losses(model.predictor, latents, actions, states, 2, change_weight=0.0)
    moved = predictor_losses(model.predictor, latents, actions, states, 2, change_weight=4.0)
    torch.testing.assert_close(same["rollout"], plain["rollout"])
    assert not torch.allclose(moved["teacher_forcing"], plain["teacher_forcing"])
    moved["rollout"].backward()
    assert model.predictor.predictor_embed.weight.grad.abs().sum() > 0


def write_metrics(path: Path, steps: range) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "lr", "seconds"])
        writer.writerows([step, 1.0 / step, 1e-4, 0.1 * step] for step in steps)


def test_metrics_log_resume_truncates_and_removes_stale_temp_files(tmp_path, monkeypatch) -> None:
    write_metrics(tmp_path / "metrics.csv", range(1, 9))
    (tmp_path / ".metrics.k2x_9q7a.tmp").write_text("step,loss\n1,")  # a killed rewrite's
    (tmp_path / ".other.tmp").write_text("not ours")  # not MetricsLog's pattern: kept
    log = MetricsLog(tmp_path, ("loss",), resume_step=5)
    log.write(6, {"loss": 0.5, "lr": 1e-4, "seconds": 0.6})
    log.close()
    files = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert files == {"metrics.csv", ".other.tmp"}
    assert sorted(read_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]
    assert read_losses(tmp_path)[6] == 0.5

    def killed_rename(src, dst) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr("world_model.train_loop.os.replace", killed_rename)
    with pytest.raises(OSError, match="injected"):
        MetricsLog(tmp_path, ("loss",), resume_step=2)
    files = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert files == {"metrics.csv", ".other.tmp"}  # failed rewrite: no temp file left
    assert sorted(read_losses(tmp_path)) == [1, 2, 3, 4, 5, 6]  # and the old file intact


def test_lr_schedule_shape() -> None:
    optim = load_train_config("predictor_small", ["data.root=x"]).optim
    total = 20000
    assert lr_at(0, optim, total) == pytest.approx(optim.start_lr)
    assert lr_at(optim.warmup_steps, optim, total) == pytest.approx(optim.lr)
    assert lr_at(total // 2, optim, total) == pytest.approx(optim.lr)
    assert lr_at(total, optim, total) == pytest.approx(optim.final_lr)


def test_cli_end_to_end_and_errors(data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["predictor", "--config", "predictor_tiny", "--data", str(data_dir), "--out", str(out)]
    assert main([*args, "steps=2", "log_every=1"]) == 0
    assert (out / "model" / "model.safetensors").is_file()
    assert "wrote" in capsys.readouterr().out
    assert main([*args, "optim.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["predictor", "--config", "predictor_tiny", "--data", str(tmp_path / "x")]) == 2
    assert "meta.json" in capsys.readouterr().err
    assert main([*args, "predictor.rollout_steps=4"]) == 2
    assert main(["encoder", *args[1:], "data.clip_len=3"]) == 2
    assert "multiple of 2" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")
def test_torchrun_ddp_two_processes(data_dir, tmp_path) -> None:
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(29500 + os.getpid() % 1000), "-m", "jepa_mpc", "train", "predictor",
        "--config", "predictor_tiny", "--data", str(data_dir), "--out", str(out), "steps=2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "x2" in result.stdout and result.stdout.count("wrote") == 1
    assert sorted(read_losses(out)) == [1, 2]
    world_model.load(out / "model")


def test_loss_plot_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    from world_model.train_loop import plot_losses

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("step,loss\n1,0.5\n2,0.25\n", encoding="utf-8")
    png = plot_losses(csv_path, tmp_path / "loss.png", ("loss",))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        plot_losses(csv_path, tmp_path / "loss.png", ("loss",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "metrics.csv"]


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=lambda path: path.stem
)
def test_every_shipped_training_config_loads(path: Path, tmp_path) -> None:
    config = load_train_config(path.stem, [f"data.root={tmp_path}", f"out={tmp_path / 'run'}"])
    assert config.steps > 0 and config.batch_size > 0 and config.optim.lr > 0
