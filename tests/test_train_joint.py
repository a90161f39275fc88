"""End-to-end (encoder + predictor) training and the anti-collapse regularisers: the
regularisers' values on known distributions, collapse without them and none with them on tiny
data, the trained encoder saved with the model, the V-JEPA stage's regulariser, config errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from toy_trajectories import write_square_trajectories

import world_model
from robots.config import ConfigError
from world_model.regularizers import (
    RegularizerSection,
    latent_std,
    regularizer,
    sigreg,
    variance_covariance,
)
from world_model.train import load_train_config, train

STD_FLOOR = 0.03  # the tiny data's latents start at a per-dimension std of ~0.07


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """8 toy episodes (``toy_trajectories``): a square that moves with the hand."""
    return write_square_trajectories(tmp_path_factory.mktemp("joint_trajectories"), 8)


def run_joint(data: Path, out: Path, *overrides: str) -> list[dict[str, float]]:
    config = load_train_config("joint_tiny", [f"data.root={data}", f"out={out}", *overrides])
    train("joint", config)
    with open(out / "metrics.csv", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_regularizers_are_zero_ish_for_gaussian_and_large_for_collapse() -> None:
    generator = torch.Generator().manual_seed(0)
    gaussian = torch.randn(64, 16, 32, generator=generator)
    collapsed = torch.randn(1, 16, 32, generator=generator).expand(64, -1, -1) + 1e-3 * torch.randn(
        64, 16, 32, generator=generator
    )
    assert sigreg(gaussian, 64, torch.Generator().manual_seed(1)) < 0.01
    assert sigreg(collapsed, 64, torch.Generator().manual_seed(1)) > 0.3
    assert variance_covariance(gaussian, 0.5, 0.04) < 0.05
    assert variance_covariance(collapsed, 0.5, 0.04) > 0.45
    assert latent_std(gaussian).mean() > 0.9 and latent_std(collapsed).mean() < 0.01
    assert regularizer(collapsed, RegularizerSection(kind="none")) == 0


def test_regularizer_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="images >= 2"):
        variance_covariance(torch.zeros(1, 4, 8), 0.5, 0.04)
    with pytest.raises(ValueError, match="kind must be one of"):
        regularizer(torch.zeros(2, 4, 8), RegularizerSection(kind="vicreg"))
    with pytest.raises(ConfigError, match="joint.regularizer.kind"):
        load_train_config("joint_tiny", ["data.root=x", "joint.regularizer.kind=bogus"])


def test_unregularized_joint_training_collapses_and_regularized_does_not(
    data_dir, tmp_path
) -> None:
    steps = ["steps=30", "log_every=5", "checkpoint_every=30", "optim.decay_steps=10"]
    plain = run_joint(data_dir, tmp_path / "none", *steps, "joint.regularizer.kind=none")
    assert plain[0]["latent_std"] > 2 * STD_FLOOR
    assert plain[-1]["latent_std"] < STD_FLOOR  # the encoder collapsed
    for kind in ("vc", "sigreg"):
        rows = run_joint(
            data_dir,
            tmp_path / kind,
            *steps,
            f"joint.regularizer.kind={kind}",
            "joint.regularizer.weight=10",
        )
        assert min(r["latent_std"] for r in rows) > STD_FLOOR, kind
        assert rows[-1]["teacher_forcing"] < 0.2 * rows[0]["teacher_forcing"], kind


def test_joint_training_trains_encoder_predictor_and_readout(data_dir, tmp_path) -> None:
    out = tmp_path / "run"
    rows = run_joint(data_dir, out, "joint.readout_weight=1.0")
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert rows[-1]["readout"] > 0 and rows[-1]["regularizer"] >= 0
    trained = world_model.load(out / "model")
    fresh = world_model.build("tiny", seed=0)
    assert trained.readout is not None
    for part in ("encoder", "predictor"):
        before = dict(getattr(fresh, part).named_parameters())
        changed = [
            name
            for name, weight in getattr(trained, part).named_parameters()
            if not torch.equal(weight, before[name])
        ]
        assert changed, part
    # the predictor's unused extrinsics encoder stays as built (official layout, strict load)
    torch.testing.assert_close(
        trained.predictor.extrinsics_encoder.weight, fresh.predictor.extrinsics_encoder.weight
    )


def test_joint_resume_matches_uninterrupted_run(data_dir, tmp_path) -> None:
    run_joint(data_dir, tmp_path / "whole", "joint.regularizer.kind=sigreg")
    run_joint(data_dir, tmp_path / "split", "joint.regularizer.kind=sigreg", "halt_after=4")
    resumed = run_joint(data_dir, tmp_path / "split", "joint.regularizer.kind=sigreg")
    whole = world_model.load(tmp_path / "whole" / "model")
    split = world_model.load(tmp_path / "split" / "model")
    assert int(resumed[-1]["step"]) == 6
    torch.testing.assert_close(whole.encoder.state_dict(), split.encoder.state_dict())


def test_encoder_stage_with_regularizer_logs_it(data_dir, tmp_path) -> None:
    out = tmp_path / "enc"
    config = load_train_config(
        "encoder_tiny",
        [f"data.root={data_dir}", f"out={out}", "steps=3", "encoder.regularizer.kind=vc"],
    )
    train("encoder", config)
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(r["regularizer"]) > 0 for r in rows)
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        train(
            "encoder",
            load_train_config(
                "encoder_tiny",
                [
                    f"data.root={data_dir}",
                    f"out={tmp_path / 'b1'}",
                    "batch_size=1",
                    "encoder.regularizer.kind=vc",
                ],
            ),
        )


def test_encoder_learning_rate_scale_applies_to_encoder_parameters_only() -> None:
    model = world_model.build("tiny", seed=0)
    config = load_train_config("joint_tiny", ["data.root=x", "joint.encoder_lr_scale=0.1"])
    from world_model.train_joint import JointObjective
    from world_model.train_loop import make_optimizer

    objective = JointObjective(model, config.joint, config.predictor, seed=0)
    optimizer, _ = make_optimizer(objective.module, config.optim, config.steps, objective.lr_scales)
    encoder = {id(p) for p in model.encoder.parameters()}
    for group in optimizer.param_groups:
        in_encoder = {id(p) in encoder for p in group["params"]}
        assert len(in_encoder) == 1  # a group is all encoder or all predictor
        expected = config.optim.lr * (0.1 if in_encoder.pop() else 1.0)
        assert group["initial_lr"] == pytest.approx(expected)


def test_image_mode_preset_trains_on_single_frames_with_the_regularizer(data_dir, tmp_path) -> None:
    """I-JEPA-style image mode: ``encoder_image_small`` (clip_len 1) at toy size."""
    out = tmp_path / "image"
    overrides = [f"data.root={data_dir}", f"out={out}", "model=tiny", "steps=2", "batch_size=4"]
    overrides += ["encoder.predictor_dim=48", "encoder.predictor_heads=2", "checkpoint_every=2"]
    config = load_train_config("encoder_image_small", overrides)
    assert config.data.clip_len == 1 and config.encoder.regularizer.kind == "vc"
    train("encoder", config)
    trained = world_model.load(out / "model")
    fresh = world_model.build("tiny", seed=0)
    assert not torch.equal(
        trained.encoder.blocks[0].attn.qkv.weight, fresh.encoder.blocks[0].attn.qkv.weight
    )
