"""Checkpoint I/O: official layout key mapping, strict key errors, refusal of unsafe or broken
files, the safetensors folder format via ``jepa-mpc convert-checkpoint``, and sha256
verification against the model card, ``SHA256SUMS`` and ``.sha256`` sidecars."""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import world_model
from robots.config import ConfigError
from world_model import (
    AssumedSizesWarning,
    CheckpointError,
    CheckpointKeyError,
    CheckpointNotFoundError,
    ChecksumError,
    ModelSpecError,
)
from world_model.checkpoint import CHECKPOINT_DIR, infer_config, map_official_state_dict
from world_model.checksums import read_card, sha256_file
from world_model.convert import main as convert_main
from world_model.state_model import StateWorldModel

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


def test_sizes_the_file_does_not_record_are_assumed_aloud(tmp_path: Path) -> None:
    """An official .pt records neither image size nor head count: the 128-px "small" model
    loaded without config= becomes 256 px, and ``load`` says so (what it assumed and how to
    give the sizes); with config= the sizes are right and nothing is said."""
    model = world_model.build("small", seed=0)
    assert model.config.img_size == 128
    layout = {part: getattr(model, part).state_dict() for part in ("encoder", "predictor")}
    path = save_official(tmp_path / "small.pt", layout)
    with pytest.warns(AssumedSizesWarning, match=r"assuming 256 px and 64-wide heads.*config="):
        assert world_model.load(path, verify=False).config.img_size == 256
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedSizesWarning)
        assert world_model.load(path, config="small", verify=False).config.img_size == 128
        assert world_model.resolve_model(f"{path}#small", verify=False).config.img_size == 128


def test_a_plain_dict_as_config_is_refused_with_the_way_to_build_one() -> None:
    for bad in ({"img_size": 64}, 64):
        with pytest.raises(ConfigError, match=f"not a {type(bad).__name__}"):
            world_model.build(bad)
    with pytest.raises(ConfigError, match="config_from_dict"):
        world_model.load(TINY_PT, config={"img_size": 64}, verify=False)


def test_model_specs_name_each_kind_of_model() -> None:
    """``resolve_model``: state, random:<preset>, a bundled name, <path>#<preset>."""
    assert isinstance(world_model.resolve_model("state"), StateWorldModel)
    untrained, built = world_model.resolve_model("random:tiny"), world_model.build("tiny", seed=0)
    assert untrained.config == built.config
    assert all(torch.equal(v, built.state_dict()[k]) for k, v in untrained.state_dict().items())
    assert world_model.resolve_model("sim-small").config.img_size == 128
    official = world_model.resolve_model(f"{TINY_PT}#{TINY_CONFIG}", verify=False)
    assert official.config.img_size == 64


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("", ModelSpecError, "empty model spec; give state, random:<preset>"),
        (3, ModelSpecError, "got int"),
        ("small", CheckpointNotFoundError, "write random:small for an untrained model"),
        ("no/such/model.pt", CheckpointNotFoundError, "known: sim-small"),
        ("random:nope", FileNotFoundError, "no model config named 'nope'; known: small"),
    ],
)
def test_bad_model_specs_say_what_a_spec_can_be(spec, error, words) -> None:
    with pytest.raises(error, match=re.escape(words)):
        world_model.resolve_model(spec)


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
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "config.json",
        "model.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no temp folder left
    original = world_model.load(TINY_PT, config=TINY_CONFIG)
    converted = world_model.load(out)
    assert converted.config == original.config
    for key, value in original.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    # refuses to overwrite unless asked, and leaves the folder intact
    assert convert_main([str(TINY_PT), str(out), "--config", str(TINY_CONFIG)]) == 2
    assert "exists" in capsys.readouterr().err
    assert convert_main([str(out), str(out), "--overwrite"]) == 0
    assert world_model.load(out).config == original.config
    assert convert_main([str(tmp_path / "nope.pt"), str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_corrupt_safetensors_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "model"
    world_model.save(world_model.build("tiny", seed=0), out)
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        world_model.load(out)


# --- sha256 verification -------------------------------------------------------------------


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    """A fresh ``save()`` of the tiny model (config.json, model.safetensors, SHA256SUMS)."""
    return world_model.save(world_model.build("tiny", seed=0), tmp_path / "tiny")


@pytest.mark.parametrize("name", ["sim-small", "sim-small-v2"])
def test_bundled_card_lists_every_file_with_its_hash(name: str) -> None:
    folder = CHECKPOINT_DIR / name
    hashes = read_card(folder / "MODEL_CARD.md")
    records = ("MODEL_CARD.md", "SHA256SUMS")
    files = sorted(path.name for path in folder.iterdir() if path.name not in records)
    shipped = ["config.json", "model.safetensors", "policy.safetensors"]
    if name == "sim-small-v2":  # and the one-goal keypoint policies (issue #15)
        shipped += [f"policy_{kind}.safetensors" for kind in ("keypoints", "pick_place", "reach")]
    assert sorted(hashes) == files == shipped
    for name, expected in hashes.items():
        assert sha256_file(folder / name) == expected, name


def test_tampered_bundled_model_is_refused_naming_file_and_hashes(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(CHECKPOINT_DIR / "sim-small", tmp_path / "sim-small"))
    expected = read_card(copy / "MODEL_CARD.md")["model.safetensors"]
    _flip_last_byte(copy / "model.safetensors")
    actual = sha256_file(copy / "model.safetensors")
    with pytest.raises(ChecksumError, match=rf"model\.safetensors.*{expected}.*{actual}"):
        world_model.load(copy)
    # the flipped byte is inside a weight, so the opt-out loads it
    assert world_model.load(copy, verify=False).config.img_size == 128


def test_save_writes_sha256sums_checked_by_load_and_sha256sum(saved: Path) -> None:
    assert (saved / "SHA256SUMS").read_text().count("\n") == 2
    run = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=saved, capture_output=True)
    assert run.returncode == 0, run.stdout
    assert world_model.load(saved, verify="strict").config.img_size == 64
    config = saved / "config.json"
    config.write_text(config.read_text().replace('"depth": 2', '"depth": 3', 1))
    with pytest.raises(ChecksumError, match="config.json.*expected [0-9a-f]{64}, actual"):
        world_model.load(saved)


def test_folder_without_record_warns_or_is_refused_when_strict(
    saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (saved / "SHA256SUMS").unlink()
    with caplog.at_level(logging.WARNING, logger="world_model.checksums"):
        world_model.load(saved)
    assert "unverified" in caplog.text
    with pytest.raises(ChecksumError, match="strict"):
        world_model.load(saved, verify="strict")
    with pytest.raises(ValueError, match="verify must be"):
        world_model.load(saved, verify="yes")  # type: ignore[arg-type]


def test_record_must_cover_the_loaded_files_and_stay_inside_the_folder(saved: Path) -> None:
    digest = sha256_file(saved / "config.json")
    (saved / "SHA256SUMS").write_text(f"{digest}  config.json\n")
    with pytest.raises(ChecksumError, match="model.safetensors not listed"):
        world_model.load(saved)
    (saved / "SHA256SUMS").unlink()
    card = saved / "MODEL_CARD.md"
    card.write_text(f"# x\n\n## Files (sha256)\n- `../config.json` {digest}\n")
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        world_model.load(saved)
    card.write_text("# x\n\n## Files (sha256)\n- `config.json` not-a-hash\n")
    with pytest.raises(CheckpointError, match="cannot read line"):
        world_model.load(saved)
    card.write_text("# a card without a files section\n")  # no record: loads, with a warning
    assert world_model.load(saved).config.img_size == 64


def test_card_listing_a_missing_file_is_refused(saved: Path) -> None:
    lines = (saved / "SHA256SUMS").read_text() + f"{'0' * 64}  extra.bin\n"
    (saved / "SHA256SUMS").write_text(lines)
    with pytest.raises(ChecksumError, match="extra.bin.*missing"):
        world_model.load(saved)


def test_official_pt_sidecar(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = Path(shutil.copy(TINY_PT, tmp_path / "tiny.pt"))
    sidecar = tmp_path / "tiny.pt.sha256"
    sidecar.write_text(
        subprocess.run(
            ["sha256sum", "tiny.pt"], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout
    )
    with caplog.at_level(logging.WARNING, logger="world_model.checksums"):
        world_model.load(path, config=TINY_CONFIG, verify="strict")
    assert not caplog.text
    sidecar.write_text("f" * 64 + "\n")  # a bare digest is accepted too (and here wrong)
    with pytest.raises(ChecksumError, match=r"tiny\.pt.*expected f{64}, actual"):
        world_model.load(path, config=TINY_CONFIG)
    sidecar.unlink()
    with pytest.raises(ChecksumError, match="no tiny.pt.sha256 sidecar"):
        world_model.load(path, config=TINY_CONFIG, verify="strict")


def test_convert_cli_verifies_and_has_an_opt_out(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_last_byte(saved / "model.safetensors")
    assert convert_main([str(saved), str(tmp_path / "a")]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert convert_main([str(saved), str(tmp_path / "b"), "--no-verify"]) == 0
    assert world_model.load(tmp_path / "b", verify="strict").config.img_size == 64


def test_save_overwrite_leaves_no_temp_folders(saved: Path) -> None:
    stale = saved.with_name(f".{saved.name}.old")
    stale.mkdir()  # as left by a crash during an earlier overwrite
    world_model.save(world_model.build("tiny", seed=1), saved, overwrite=True)
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    assert world_model.load(saved, verify="strict").config.img_size == 64


def test_demo_and_bench_pass_no_verify_to_the_loader(saved: Path, tmp_path: Path) -> None:
    from jepa_mpc import bench, demo

    assert demo.parse_args(["--no-verify"]).no_verify
    assert not demo.parse_args([]).no_verify
    config, _ = bench.parse_args(["--no-verify", "--out", str(tmp_path / "b")])
    assert config.verify is False
    assert bench.parse_args(["--out", str(tmp_path / "b")])[0].verify is True
    _flip_last_byte(saved / "model.safetensors")
    with pytest.raises(ChecksumError):
        demo.load_model(str(saved), "cpu")
    assert demo.load_model(str(saved), "cpu", verify=False).config.img_size == 64
    with pytest.raises(ChecksumError):
        world_model.resolve_model(str(saved), torch.device("cpu"))
    assert world_model.resolve_model(str(saved), torch.device("cpu"), verify=False) is not None
