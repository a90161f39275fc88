"""Checkpoint I/O: official layout key mapping, strict key errors, refusal of unsafe or broken
files, and the safetensors folder format via ``jepa-mpc convert-checkpoint``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from world_model import CheckpointError, CheckpointKeyError, CheckpointNotFoundError
from world_model.checkpoint import infer_config, map_official_state_dict
from world_model.convert import main as convert_main

DATA = Path(__file__).parent / "data"
TINY_PT = DATA / "vjepa2_ac_tiny.pt"
TINY_CONFIG = DATA / "vjepa2_ac_tiny_config.json"


@pytest.fixture(scope="module")
def official() -> dict:
    return torch.load(TINY_PT, map_location="cpu", weights_only=True)


def save_official(path: Path, checkpoint: dict) -> Path:
    torch.save(checkpoint, path)
    return path


def test_key_mapping_strips_release_prefixes() -> None:
    weight = torch.zeros(2)
    mapped = map_official_state_dict(
        {
            "encoder": {"module.backbone.norm.weight": weight, "backbone.blocks.0.x": weight},
            "predictor": {"module.predictor_proj.bias": weight, "action_encoder.weight": weight},
        }
    )
    assert sorted(mapped) == [
        "encoder.blocks.0.x",
        "encoder.norm.weight",
        "predictor.action_encoder.weight",
        "predictor.predictor_proj.bias",
    ]
    with pytest.raises(CheckpointError, match="predictor"):
        map_official_state_dict({"encoder": {}})


def test_official_mapping_covers_every_model_key(official: dict) -> None:
    model = world_model.build(TINY_CONFIG)
    assert set(map_official_state_dict(official)) == set(model.state_dict())


@pytest.mark.parametrize("part", ["encoder", "predictor"])
def test_missing_key_is_named(tmp_path: Path, official: dict, part: str) -> None:
    broken = {k: dict(v) if isinstance(v, dict) else v for k, v in official.items()}
    key = next(k for k in broken[part] if k.endswith("norm1.bias"))
    del broken[part][key]
    path = save_official(tmp_path / "missing.pt", broken)
    name = f"{part}.{key.removeprefix('module.backbone.')}"
    with pytest.raises(CheckpointKeyError, match=rf"missing.*{name}"):
        world_model.load(path, config=TINY_CONFIG)


def test_unexpected_and_misshaped_keys_are_named(tmp_path: Path, official: dict) -> None:
    extra = {k: dict(v) if isinstance(v, dict) else v for k, v in official.items()}
    extra["predictor"]["module.backbone.mystery.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointKeyError, match=r"unexpected.*predictor\.mystery\.weight"):
        world_model.load(save_official(tmp_path / "extra.pt", extra), config=TINY_CONFIG)

    shaped = {k: dict(v) if isinstance(v, dict) else v for k, v in official.items()}
    shaped["predictor"]["module.backbone.state_encoder.weight"] = torch.zeros(96, 6)
    with pytest.raises(CheckpointKeyError, match=r"predictor\.state_encoder\.weight.*\(96, 6\)"):
        world_model.load(save_official(tmp_path / "shape.pt", shaped), config=TINY_CONFIG)


def test_wrong_size_config_is_refused() -> None:
    with pytest.raises(CheckpointKeyError, match="mis-shaped"):
        world_model.load(TINY_PT, config="small")


def test_sizes_need_config_when_heads_cannot_be_inferred() -> None:
    with pytest.raises(CheckpointError, match="head count"):
        world_model.load(TINY_PT)


def test_sizes_are_inferred_for_head_dim_64(tmp_path: Path) -> None:
    model = world_model.build("small", seed=0)
    layout = {
        part: {f"module.backbone.{k}": v for k, v in getattr(model, part).state_dict().items()}
        for part in ("encoder", "predictor")
    }
    inferred = infer_config(map_official_state_dict(layout))
    assert inferred.encoder == model.config.encoder
    assert inferred.predictor == model.config.predictor
    loaded = world_model.load(save_official(tmp_path / "small.pt", layout), config="small")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_truncated_and_random_files_are_refused(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(TINY_PT.read_bytes()[: TINY_PT.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        world_model.load(truncated, config=TINY_CONFIG)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="refusing|corrupt"):
        world_model.load(noise, config=TINY_CONFIG)


class _RunsCode:
    """Unpickling this would run a shell command (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"encoder": _RunsCode(marker), "predictor": {}}, handle, protocol=protocol)
    with pytest.raises(CheckpointError, match="refusing to load"):
        world_model.load(path, config=TINY_CONFIG)
    assert not marker.exists()


def test_missing_path_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="known.*sim-small"):
        world_model.load("no-such-model")
    with pytest.raises(FileNotFoundError):
        world_model.load(tmp_path / "absent.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        world_model.load(tmp_path / "empty")


def test_convert_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "converted"
    assert convert_main([str(TINY_PT), str(out), "--config", str(TINY_CONFIG)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no temp folder left
    original = world_model.load(TINY_PT, config=TINY_CONFIG)
    converted = world_model.load(out)
    assert converted.config == original.config
    for key, value in original.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    # refuses to overwrite unless asked, and leaves the folder intact
    assert convert_main([str(TINY_PT), str(out), "--config", str(TINY_CONFIG)]) == 1
    assert "exists" in capsys.readouterr().err
    assert convert_main([str(out), str(out), "--overwrite"]) == 0
    assert world_model.load(out).config == original.config
    assert convert_main([str(tmp_path / "nope.pt"), str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()


def test_corrupt_safetensors_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "model"
    world_model.save(world_model.build("tiny", seed=0), out)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        world_model.load(out)
