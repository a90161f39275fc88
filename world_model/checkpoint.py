"""Checkpoint I/O: the official V-JEPA 2-AC layout (a torch pickle ``{"encoder", "predictor"}``,
read only with ``weights_only=True``) and our own folder format (``model.safetensors`` +
``config.json`` + ``SHA256SUMS``). Files are checked against their sha256 record first
(``checksums.py``); loading is strict: a missing, unexpected, mis-shaped, non-float or non-finite
tensor and a malformed config are errors naming the key or field (``docs/security.md``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robots.config import ConfigError
from world_model.checksums import SUMS_FILE, Verify, check_verify_arg, verify_file, verify_folder
from world_model.checksums import write_sums as write_checksums
from world_model.config import WorldModelConfig, config_from_dict
from world_model.devices import resolve_device
from world_model.errors import (
    AssumedSizesWarning,
    CheckpointError,
    CheckpointKeyError,
    CheckpointNotFoundError,
)
from world_model.files import fsync_file
from world_model.model import WorldModel, resolve_config

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OFFICIAL_PARTS = ("encoder", "predictor")
OFFICIAL_PREFIXES = ("module.", "backbone.")
DEFAULT_HEAD_DIM = 64  # every released V-JEPA 2 model; heads are not visible in the tensors
# Bounds on a config read from a checkpoint: far above any V-JEPA 2 size (ViT-g is 1408 x 40),
# low enough that a hostile config.json cannot make us build a model for minutes.
MAX_CONFIG_INT = {"depth": 1024, "img_size": 8192, "num_frames": 4096}
MAX_CONFIG_DIM = 65536
# Fields a saved config.json must hold (the sizes); fields added later (flags such as
# predictor.residual) take their defaults when an older checkpoint lacks them.
REQUIRED_CONFIG: dict[str, tuple[str, ...]] = {
    "": ("img_size", "patch_size", "tubelet_size", "num_frames", "encoder", "predictor"),
    "encoder": ("embed_dim", "depth", "num_heads", "mlp_ratio"),
    "predictor": ("predictor_embed_dim", "depth", "num_heads", "mlp_ratio", "action_embed_dim"),
}


def map_official_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Official checkpoint -> ``WorldModel.state_dict()`` names.

    ``{"encoder": {"module.backbone.blocks.0.attn.qkv.weight": ...}, "predictor": {...}}``
    becomes ``{"encoder.blocks.0.attn.qkv.weight": ..., "predictor....": ...}``: the release's
    ``module.`` / ``backbone.`` prefixes are stripped and the part name is prepended (our
    parameter names otherwise equal the release's).
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint must be a mapping, got {type(checkpoint).__name__}")
    missing = [part for part in OFFICIAL_PARTS if part not in checkpoint]
    if missing:
        raise CheckpointError(
            f"checkpoint lacks {missing}; an official V-JEPA 2-AC checkpoint holds "
            f"'encoder' and 'predictor' (found keys {sorted(map(str, checkpoint))[:8]})"
        )
    mapped: dict[str, torch.Tensor] = {}
    for part in OFFICIAL_PARTS:
        weights = checkpoint[part]
        if not isinstance(weights, dict):
            raise CheckpointError(f"checkpoint[{part!r}] must be a state dict")
        for key, tensor in weights.items():
            if not isinstance(key, str):
                raise CheckpointKeyError(f"{part}: key {key!r} is not a string")
            name = key
            for prefix in OFFICIAL_PREFIXES:
                name = name.removeprefix(prefix)
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointKeyError(f"{part}: {key!r} is not a tensor")
            mapped[f"{part}.{name}"] = tensor
    return mapped


def infer_config(state: dict[str, torch.Tensor]) -> WorldModelConfig:
    """Sizes from mapped tensors. Heads assume head dim 64 (all released models); the image
    size (not visible with RoPE) defaults to 256. Pass a config when either differs (``load``
    warns that it assumed them: ``AssumedSizesWarning``)."""
    try:
        patch = state["encoder.patch_embed.proj.weight"]
        enc_fc1 = state["encoder.blocks.0.mlp.fc1.weight"]
        pred_fc1 = state["predictor.predictor_blocks.0.mlp.fc1.weight"]
        action = state["predictor.action_encoder.weight"]
    except KeyError as error:
        raise CheckpointKeyError(f"cannot infer sizes: missing key {error.args[0]!r}") from None
    for name, tensor, rank in (
        ("encoder.patch_embed.proj.weight", patch, 5),
        ("encoder.blocks.0.mlp.fc1.weight", enc_fc1, 2),
        ("predictor.predictor_blocks.0.mlp.fc1.weight", pred_fc1, 2),
        ("predictor.action_encoder.weight", action, 2),
    ):
        if tensor.ndim != rank or 0 in tensor.shape:
            raise CheckpointKeyError(
                f"cannot infer sizes: {name} has shape {tuple(tensor.shape)}, expected a "
                f"non-empty {rank}-D tensor"
            )
    enc_dim, pred_dim = patch.shape[0], pred_fc1.shape[1]
    for name, dim in (("encoder", enc_dim), ("predictor", pred_dim)):
        if dim % DEFAULT_HEAD_DIM:
            raise CheckpointError(
                f"cannot infer the {name}'s head count (width {dim} is not a multiple of "
                f"{DEFAULT_HEAD_DIM}); pass config= with its sizes"
            )
    data = {
        "patch_size": int(patch.shape[-1]),
        "tubelet_size": int(patch.shape[2]),
        "encoder": {
            "embed_dim": int(enc_dim),
            "depth": _count_blocks(state, "encoder.blocks."),
            "num_heads": int(enc_dim // DEFAULT_HEAD_DIM),
            "mlp_ratio": enc_fc1.shape[0] / enc_dim,
        },
        "predictor": {
            "predictor_embed_dim": int(pred_dim),
            "depth": _count_blocks(state, "predictor.predictor_blocks."),
            "num_heads": int(pred_dim // DEFAULT_HEAD_DIM),
            "mlp_ratio": pred_fc1.shape[0] / pred_dim,
            "action_embed_dim": int(action.shape[1]),
        },
    }
    return checked_config(data, where="sizes inferred from the checkpoint")


def warn_assumed_sizes(path: Path, config: WorldModelConfig) -> None:
    """Say which sizes an official ``.pt`` loaded without ``config=`` was given on faith: the
    file records neither the image size (RoPE has no position table to size it by) nor the head
    count (the tensors show the width only); a model trained otherwise (128 px, say) would load
    without error and plan on wrong latents."""
    warnings.warn(
        f"{path.name}: an official checkpoint does not record its image size or head counts; "
        f"assuming {config.img_size} px and {DEFAULT_HEAD_DIM}-wide heads (encoder "
        f"{config.encoder.num_heads}, predictor {config.predictor.num_heads} heads) as in the "
        "released models. If it was trained otherwise, pass config= (a preset such as vitg-ac, "
        "a YAML/JSON path or a WorldModelConfig; CLI: <path>#<preset>)",
        AssumedSizesWarning,
        stacklevel=3,
    )


def checked_config(data: object, where: str, complete: bool = False) -> WorldModelConfig:
    """A config from a checkpoint's mapping, every field of the right type and in range (and,
    if ``complete``, every size in ``REQUIRED_CONFIG`` present); anything else is a
    CheckpointError naming the field, not a TypeError deep inside the model."""
    _check_fields(WorldModelConfig, data, where, REQUIRED_CONFIG[""] if complete else ())
    try:
        return config_from_dict(data, where=where)  # type: ignore[arg-type]
    except (ConfigError, TypeError, ValueError, ZeroDivisionError) as error:
        raise CheckpointError(f"{where}: invalid model config: {error}") from None


def _check_fields(cls: type, data: object, where: str, required: tuple[str, ...]) -> None:
    """Types and ranges of a (nested) config mapping: ints >= 1 (and below a sanity bound),
    finite floats > 0, bools; unknown keys are left to ``config_from_dict`` to name."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a mapping, got {type(data).__name__}")
    missing = [name for name in required if name not in data]
    if missing:
        raise CheckpointError(f"{where}: missing field(s) {missing}")
    defaults = cls()
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, name = data[field.name], f"{where}.{field.name}"
        default = getattr(defaults, field.name)
        if dataclasses.is_dataclass(default):
            inner = REQUIRED_CONFIG.get(field.name, ()) if required else ()
            _check_fields(type(default), value, name, inner)
        elif not _valid_field(field.name, value, default):
            kind = type(default).__name__
            raise CheckpointError(f"{name} = {value!r} is not a valid {kind} for a model size")


def _valid_field(name: str, value: object, default: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, int):
        limit = MAX_CONFIG_INT.get(name, MAX_CONFIG_DIM)
        return isinstance(value, int) and 1 <= value <= limit
    if isinstance(default, float):
        return isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 64
    return isinstance(value, type(default))


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})


def load_state_strict(model: WorldModel, state: dict[str, torch.Tensor]) -> None:
    """Put ``state``'s tensors into ``model`` as float32 (assigned, not copied: ``model`` may
    live on the meta device); raises CheckpointKeyError naming any missing, unexpected or
    mis-shaped key, or a tensor of the wrong dtype or with NaN/inf (the first few of each),
    before anything is changed."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing key(s) {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected key(s) {unexpected[:5]}")
    if shapes:
        problems.append("mis-shaped " + "; ".join(shapes[:5]))
    if not problems:  # right names and shapes; is the content usable?
        bad = [f"{key}: {problem}" for key in expected if (problem := _tensor_problem(state[key]))]
        if bad:
            problems.append("bad tensor(s) " + "; ".join(bad[:5]))
    if problems:
        raise CheckpointKeyError("checkpoint does not fit the model: " + " | ".join(problems))
    model.load_state_dict({key: value.float() for key, value in state.items()}, assign=True)


def _tensor_problem(tensor: torch.Tensor) -> str | None:
    """Why a checkpoint tensor cannot become a float32 parameter (None if it can)."""
    if tensor.layout != torch.strided or tensor.is_meta:
        return f"{tensor.layout} {'meta ' if tensor.is_meta else ''}tensor, expected dense data"
    if not tensor.is_floating_point():
        return f"dtype {tensor.dtype}, expected a floating-point dtype"
    # a float64 sum is non-finite iff some value is (barring float64 overflow, re-checked)
    if not math.isfinite(tensor.sum(dtype=torch.float64)) and not bool(tensor.isfinite().all()):
        return "holds NaN or infinite values"
    return None


def read_official(path: Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pt`` with ``torch.load(weights_only=True)`` and map its keys."""
    try:
        with warnings.catch_warnings():  # torch warns about protocol-4 pickles it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        code = re.search(r"GLOBAL (\S+)", str(error))
        if code:
            raise CheckpointError(
                f"{path}: refusing to load: the pickle references code ({code.group(1)}) "
                f"that unpickling would run; only plain tensor checkpoints are accepted"
            ) from None
        raise CheckpointError(
            f"{path}: refusing to load: not a plain tensor checkpoint (corrupt, or pickle "
            f"content the safe loader does not accept): {_unpickler_reason(error)}"
        ) from None
    except Exception as error:  # torch.load raises many types on garbage or truncated input
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {str(error)[:200]}"
        ) from None
    return map_official_state_dict(checkpoint)


def _unpickler_reason(error: Exception) -> str:
    """The informative line of torch's long weights-only refusal message."""
    boilerplate = ("Weights only load failed", "Re-running", "Please file", "Check the doc")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate)]
    return (useful or lines or ["unknown"])[0][:200]


def read_folder(
    folder: Path, verify: Verify = True
) -> tuple[WorldModelConfig, dict[str, torch.Tensor]]:
    """Read our format: ``config.json`` + ``model.safetensors``, after checking their sha256
    against the folder's card / ``SHA256SUMS`` (see ``world_model.checksums.verify_folder``)."""
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise CheckpointNotFoundError(
                f"{folder}: no {name} (a converted model folder holds {CONFIG_FILE} and "
                f"{WEIGHTS_FILE})"
            )
    verify_folder(folder, (CONFIG_FILE, WEIGHTS_FILE), verify)
    config_path = folder / CONFIG_FILE
    try:
        with open(config_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{config_path}: invalid JSON ({error})") from None
    config = checked_config(data, where=str(config_path), complete=True)
    try:
        state = load_file(folder / WEIGHTS_FILE)
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(
            f"{folder / WEIGHTS_FILE}: unreadable safetensors file (truncated or corrupt?): "
            f"{str(error)[:200]}"
        ) from None
    return config, state


def find_checkpoint(path_or_name: str | Path) -> Path:
    """A path that exists, or a bundled name meaning ``world_model/checkpoints/<name>/``."""
    path = Path(path_or_name)
    if path.exists():
        return path
    bundled = CHECKPOINT_DIR / str(path_or_name)
    if path.name == str(path_or_name) and not path.suffix and bundled.is_dir():
        return bundled
    known = known_checkpoints()
    raise CheckpointNotFoundError(
        f"no checkpoint at {str(path_or_name)!r}; give a path to an official .pt or a "
        f"converted folder, or a bundled name (known: {', '.join(known) or 'none'})"
    )


def known_checkpoints() -> list[str]:
    """Names of the bundled checkpoints in ``world_model/checkpoints/``."""
    if not CHECKPOINT_DIR.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINT_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def load(
    path_or_name: str | Path,
    config: str | Path | WorldModelConfig | None = None,
    device: str | torch.device = "cpu",
    verify: Verify = True,
) -> WorldModel:
    """Load a world model, in eval mode on ``device``.

    Args:
        path_or_name: an official ``.pt``, a converted folder, or a bundled name ("sim-small").
        config: sizes (config, preset name or path); default: the folder's ``config.json``, or
            for a ``.pt`` inferred from its tensors.
        device: where to put it.
        verify: check every file's sha256 against the folder's ``MODEL_CARD.md`` files section
            and ``SHA256SUMS`` (a ``.pt``: its ``<file>.sha256`` sidecar) before reading it.
            True: a mismatch raises ChecksumError, a checkpoint without a record loads with a
            logged warning; "strict": no record is a ChecksumError too; False: no check.

    Raises:
        CheckpointNotFoundError; CheckpointError (ChecksumError, CheckpointKeyError) naming
        the file, key or field at fault; DeviceError for a device this machine does not have.
        Nothing is loaded when a check fails.
    """
    check_verify_arg(verify)
    device = resolve_device(device)  # before reading anything: a missing CUDA is one line
    path = find_checkpoint(path_or_name)
    if path.is_dir():
        folder_config, state = read_folder(path, verify)
        config = folder_config if config is None else resolve_config(config)
    else:
        verify_file(path, verify)
        state = read_official(path)
        if config is None:
            config = infer_config(state)
            warn_assumed_sizes(path, config)
        else:
            config = resolve_config(config)
    model = _empty_model(config)
    load_state_strict(model, state)
    model.predictor.reset_rope("cpu")
    model.source = path  # where files made for this model live (the fast preset's policy)
    return model.to(device).eval()


def _empty_model(config: WorldModelConfig) -> WorldModel:
    """The model's modules on the meta device (no throw-away random init of up to 1.3 B
    parameters); sizes torch cannot build are a CheckpointError."""
    try:
        with torch.device("meta"):
            return WorldModel(config)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot build a model of these sizes ({error})") from None


def save(model: WorldModel, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as ``out_dir/{config.json, model.safetensors, SHA256SUMS}`` atomically
    (a temp folder beside it, files fsynced, then a rename), so no half-written folder is ever
    left at ``out_dir``; ``SHA256SUMS`` lets ``load`` verify the folder like a carded one."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "jepa-mpc/world_model/v1"})
        with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as handle:
            json.dump(model.config.to_dict(), handle, indent=1)
        write_checksums(tmp, [CONFIG_FILE, WEIGHTS_FILE])
        for name in (CONFIG_FILE, WEIGHTS_FILE, SUMS_FILE):  # data on disk before the rename
            fsync_file(tmp / name)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            if old.exists():  # left by a crash during an earlier overwrite
                shutil.rmtree(old)
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir
