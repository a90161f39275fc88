"""Fuzzing of checkpoint loading (hypothesis, bounded): truncated, random or bit-flipped files,
fuzzed safetensors headers, wrong / extra keys, wrong shapes and dtypes, NaN weights, broken
``config.json`` and pickles that would run code. Every bad file must raise the project's
``CheckpointError`` naming the problem: no raw KeyError / RuntimeError / UnpicklingError, no
code run, no crash. Folder tests load with ``verify=False`` to reach the parsers (the sha256
check would otherwise stop them first; that is tested too)."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import world_model
from world_model import (
    CheckpointError,
    CheckpointKeyError,
    ChecksumError,
    EncoderConfig,
    PredictorConfig,
    WorldModelConfig,
)

DATA = Path(__file__).parent / "data"
TINY_PT = DATA / "vjepa2_ac_tiny.pt"
TINY_CONFIG = DATA / "vjepa2_ac_tiny_config.json"
FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=8)  # examples that may load a whole model (slow on 2 cores)


class Quiet(dict):
    """A dict whose repr is short (hypothesis prints a failing test's arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} entries>"


@pytest.fixture(scope="module")
def folder_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of a fresh ``save()`` of the tiny model, by name."""
    out = world_model.save(world_model.build("tiny", seed=0), tmp_path_factory.mktemp("m") / "m")
    return Quiet({path.name: path.read_bytes() for path in out.iterdir()})


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """The tiny model's state dict (WorldModel names)."""
    return Quiet(world_model.build("tiny", seed=0).state_dict())


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    folder = root / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def with_weights(root: Path, files: dict[str, bytes], tensors: dict[str, torch.Tensor]) -> Path:
    """A folder holding the tiny config and ``tensors`` as its safetensors file."""
    folder = write_folder(root, {"config.json": files["config.json"]})
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    return folder


def load_folder(folder: Path) -> world_model.WorldModel:
    return world_model.load(folder, verify=False)


def refused(call: Callable[[], Any], *words: str) -> CheckpointError:
    """Run ``call``; it must raise CheckpointError whose message holds every word."""
    with pytest.raises(CheckpointError) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    return info.value


# --- corrupt files -------------------------------------------------------------------------


@FUZZ
@given(fraction=st.floats(0.0, 0.9999))
def test_truncated_safetensors(folder_files: dict[str, bytes], fraction: float) -> None:
    data = folder_files["model.safetensors"]
    files = {**folder_files, "model.safetensors": data[: int(len(data) * fraction)]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), files)
        refused(lambda: load_folder(folder), "model.safetensors")
        with pytest.raises(ChecksumError, match="model.safetensors.*expected"):
            world_model.load(folder)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_safetensors(folder_files: dict[str, bytes], data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), {**folder_files, "model.safetensors": data})
        refused(lambda: load_folder(folder), "model.safetensors")


HEADER_ENTRY = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "BF16", "I64", "BOOL", "U8", "F8_E4M3", "XYZ"]),
        "shape": st.lists(st.integers(-2, 2**40), max_size=4),
        "data_offsets": st.lists(st.integers(-1, 2**40), min_size=0, max_size=3),
    }
)


@FUZZ
@given(
    header=st.dictionaries(st.text(max_size=40), HEADER_ENTRY, max_size=4),
    declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    payload=st.binary(max_size=256),
)
def test_fuzzed_safetensors_header(
    folder_files: dict[str, bytes], header: dict, declared: int | None, payload: bytes
) -> None:
    """A header of random tensors (odd dtypes, negative or huge shapes and offsets) and a
    possibly lying length prefix: refused, never a huge allocation or a crash."""
    text = json.dumps(header).encode()
    size = len(text) if declared is None else declared
    data = struct.pack("<Q", size) + text + payload
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), {**folder_files, "model.safetensors": data})
        error = refused(lambda: load_folder(folder))
        assert "model.safetensors" in str(error) or "missing key" in str(error)


@FEW
@given(flips=st.lists(st.tuples(st.floats(0, 0.9999), st.integers(1, 255)), min_size=1, max_size=8))
def test_bit_flips_in_safetensors_load_or_are_refused(
    folder_files: dict[str, bytes], flips: list[tuple[float, int]]
) -> None:
    """Flipped bytes either land in a weight (the parser cannot tell: the sha256 check can) or
    break the file (a CheckpointError); nothing else escapes."""
    data = bytearray(folder_files["model.safetensors"])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp), {**folder_files, "model.safetensors": bytes(data)})
        try:
            load_folder(folder)
        except CheckpointError:
            pass
        if bytes(data) != folder_files["model.safetensors"]:
            with pytest.raises(ChecksumError, match="sha256 mismatch"):
                world_model.load(folder)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=4096),
        st.floats(0.0, 0.9999).map(
            lambda f: TINY_PT.read_bytes()[: int(TINY_PT.stat().st_size * f)]
        ),
    )
)
def test_truncated_or_random_pt(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        path.write_bytes(data)
        error = refused(lambda: world_model.load(path, config=TINY_CONFIG, verify=False))
        assert "model.pt" in str(error) or "checkpoint" in str(error)


# --- wrong content in a well-formed file ---------------------------------------------------


@FUZZ
@given(
    dropped=st.sets(st.integers(0, 63), max_size=4),
    extra=st.lists(
        st.from_regex(r"[a-z_]{1,8}(\.[a-z0-9_]{1,8}){0,3}", fullmatch=True), max_size=3
    ),
)
def test_missing_and_extra_keys_are_named(
    folder_files: dict[str, bytes], state: dict, dropped: set[int], extra: list[str]
) -> None:
    keys = sorted(state)
    tensors = {k: state[k] for i, k in enumerate(keys) if i not in dropped}
    tensors.update({f"extra.{name}": torch.zeros(2) for name in extra})
    if len(tensors) == len(state) and not extra:
        return  # nothing changed
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_weights(Path(tmp), folder_files, tensors)
        error = refused(lambda: load_folder(folder))
        assert isinstance(error, CheckpointKeyError)
        named = [keys[i] for i in sorted(dropped)][:1] + [f"extra.{n}" for n in sorted(extra)][:1]
        for key in named:
            assert key in str(error)


@FUZZ
@given(index=st.integers(0, 63), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_misshaped_tensor_is_named(
    folder_files: dict[str, bytes], state: dict, index: int, shape: list[int]
) -> None:
    key = sorted(state)[index]
    if list(state[key].shape) == shape:
        return
    tensors = {**state, key: torch.zeros(shape)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_weights(Path(tmp), folder_files, tensors)
        refused(lambda: load_folder(folder), "mis-shaped", key, str(tuple(shape)))


@FUZZ
@given(
    index=st.integers(0, 63),
    dtype=st.sampled_from([torch.int8, torch.int32, torch.int64, torch.uint8, torch.bool]),
)
def test_integer_tensor_is_refused(
    folder_files: dict[str, bytes], state: dict, index: int, dtype: torch.dtype
) -> None:
    key = sorted(state)[index]
    tensors = {**state, key: state[key].to(dtype)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_weights(Path(tmp), folder_files, tensors)
        refused(lambda: load_folder(folder), key, "dtype", str(dtype))


@FEW
@given(
    index=st.integers(0, 63),
    where=st.floats(0, 0.9999),
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
)
def test_non_finite_weight_is_refused(
    folder_files: dict[str, bytes], state: dict, index: int, where: float, value: float
) -> None:
    key = sorted(state)[index]
    tensor = state[key].clone().flatten()
    tensor[int(where * tensor.numel())] = value
    tensors = {**state, key: tensor.view_as(state[key])}
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_weights(Path(tmp), folder_files, tensors)
        refused(lambda: load_folder(folder), key, "NaN or infinite")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_load_as_float32(
    tmp_path: Path, folder_files: dict[str, bytes], state: dict, dtype: torch.dtype
) -> None:
    folder = with_weights(tmp_path, folder_files, {k: v.to(dtype) for k, v in state.items()})
    model = load_folder(folder)
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, state[key].to(dtype).float()), key


# --- config.json ---------------------------------------------------------------------------

INT_FIELDS = [
    ("img_size",),
    ("patch_size",),
    ("tubelet_size",),
    ("num_frames",),
    ("encoder", "embed_dim"),
    ("encoder", "depth"),
    ("encoder", "num_heads"),
    ("predictor", "predictor_embed_dim"),
    ("predictor", "depth"),
    ("predictor", "num_heads"),
    ("predictor", "action_embed_dim"),
]
FLOAT_FIELDS = [("encoder", "mlp_ratio"), ("predictor", "mlp_ratio")]
BOOL_FIELDS = [("encoder", "use_rope"), ("predictor", "use_rope"), ("predictor", "is_frame_causal")]
NOT_A_SIZE = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
BAD_VALUE = {
    "int": st.one_of(
        NOT_A_SIZE,
        st.integers(max_value=0),
        st.integers(min_value=10**5),
        st.booleans(),
        st.floats(allow_nan=True),
    ),
    "float": st.one_of(
        NOT_A_SIZE,
        st.floats(max_value=0.0),
        st.floats(min_value=65.0),
        st.sampled_from([float("nan"), float("inf")]),
        st.booleans(),
    ),
    "bool": st.one_of(NOT_A_SIZE, st.integers(), st.floats()),
}
FIELD_AND_BAD_VALUE = st.one_of(
    *(
        st.tuples(st.sampled_from(fields), BAD_VALUE[kind])
        for kind, fields in (("int", INT_FIELDS), ("float", FLOAT_FIELDS), ("bool", BOOL_FIELDS))
    )
)


def set_field(config: dict, path: tuple[str, ...], value: object, delete: bool = False) -> dict:
    """A copy of ``config`` with ``path`` set to ``value`` (or removed)."""
    config = json.loads(json.dumps(config))
    node = config
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


def with_config(root: Path, files: dict[str, bytes], text: bytes) -> Path:
    return write_folder(root, {**files, "config.json": text})


@FUZZ
@given(field_value=FIELD_AND_BAD_VALUE)
def test_config_field_of_wrong_type_or_range_is_named(
    folder_files: dict[str, bytes], field_value: tuple[tuple[str, ...], object]
) -> None:
    path, value = field_value
    config = set_field(json.loads(folder_files["config.json"]), path, value)
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_config(Path(tmp), folder_files, json.dumps(config).encode())
        refused(lambda: load_folder(folder), "config.json", path[-1])


@FUZZ
@given(path=st.sampled_from(INT_FIELDS + FLOAT_FIELDS + [("encoder",), ("predictor",)]))
def test_config_missing_field_is_named(
    folder_files: dict[str, bytes], path: tuple[str, ...]
) -> None:
    config = set_field(json.loads(folder_files["config.json"]), path, None, delete=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_config(Path(tmp), folder_files, json.dumps(config).encode())
        refused(lambda: load_folder(folder), "config.json", "missing field", path[-1])


def test_config_without_a_flag_loads_with_its_default(
    tmp_path: Path, folder_files: dict[str, bytes]
) -> None:
    """Flags added to the config after a checkpoint was saved are optional (sizes are not)."""
    config = json.loads(folder_files["config.json"])
    for path in BOOL_FIELDS:
        config = set_field(config, path, None, delete=True)
    folder = with_config(tmp_path, folder_files, json.dumps(config).encode())
    assert load_folder(folder).config.predictor.is_frame_causal is True


@FUZZ
@given(
    text=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=10,
        ).map(lambda value: json.dumps(value).encode()),
        st.just(b"[" * 100_000),
        st.just(b'{"img_size": 64, "unknown_key": 1}'),
    )
)
def test_config_that_is_not_a_model_config_is_refused(
    folder_files: dict[str, bytes], text: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = with_config(Path(tmp), folder_files, text)
        refused(lambda: load_folder(folder), "config.json")


def test_sizes_torch_cannot_build_are_named(tmp_path: Path, folder_files: dict[str, bytes]) -> None:
    """Individually valid sizes that do not fit each other (patch larger than the image)."""
    config = set_field(json.loads(folder_files["config.json"]), ("patch_size",), 128)
    folder = with_config(tmp_path, folder_files, json.dumps(config).encode())
    refused(lambda: load_folder(folder), "config.json", "img_size")


def test_edited_config_is_caught_by_the_checksum_first(
    tmp_path: Path, folder_files: dict[str, bytes]
) -> None:
    config = set_field(json.loads(folder_files["config.json"]), ("img_size",), -1)
    folder = with_config(tmp_path, folder_files, json.dumps(config).encode())
    with pytest.raises(ChecksumError, match="config.json"):
        world_model.load(folder)


# --- official .pt: structure and code execution ---------------------------------------------


class Payload:
    """Unpickling an instance calls ``function(*args)`` (code execution; must never happen)."""

    def __init__(self, function: Callable, args: tuple) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


def payload_for(kind: str, marker: Path) -> Payload:
    if kind == "os.system":
        return Payload(os.system, (f"touch {marker}",))
    if kind == "exec":
        return Payload(builtins.exec, (f"open({str(marker)!r}, 'w').close()",))
    if kind == "eval":
        return Payload(builtins.eval, (f"open({str(marker)!r}, 'w').close()",))
    return Payload(subprocess.call, (["touch", str(marker)],))


@FUZZ
@given(
    kind=st.sampled_from(["os.system", "exec", "eval", "subprocess"]),
    place=st.sampled_from(["top", "part", "tensor"]),
    protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
    torch_format=st.booleans(),
)
def test_pickle_that_runs_code_is_refused(
    state: dict, kind: str, place: str, protocol: int, torch_format: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "pwned"
        payload = payload_for(kind, marker)
        encoder = {f"module.backbone.{k[8:]}": v for k, v in state.items() if k[:8] == "encoder."}
        if place == "top":
            checkpoint: object = payload
        elif place == "part":
            checkpoint = {"encoder": payload, "predictor": {}}
        else:
            checkpoint = {"encoder": {**encoder, "module.norm.weight": payload}, "predictor": {}}
        path = Path(tmp) / "evil.pt"
        if torch_format:
            torch.save(checkpoint, path, pickle_protocol=max(protocol, 2))
        else:
            path.write_bytes(pickle.dumps(checkpoint, protocol=protocol))
        refused(lambda: world_model.load(path, config=TINY_CONFIG, verify=False), "refusing")
        assert not marker.exists(), "unpickling ran code"


ODD_CHECKPOINTS = [
    ([1, 2, 3], "mapping"),
    (torch.zeros(3), "mapping"),
    ({"encoder": [torch.zeros(1)], "predictor": {}}, "state dict"),
    ({"encoder": {1: torch.zeros(1)}, "predictor": {}}, "not a string"),
    ({"encoder": {"a": 1.5}, "predictor": {}}, "not a tensor"),
    ({"encoder": {"a": torch.zeros(2, dtype=torch.complex64)}, "predictor": {}}, "missing key"),
    ({"weights": {}}, "lacks"),
]


@pytest.mark.parametrize(("checkpoint", "words"), ODD_CHECKPOINTS)
def test_odd_structures_in_a_pt_are_named(tmp_path: Path, checkpoint: object, words: str) -> None:
    path = tmp_path / "odd.pt"
    torch.save(checkpoint, path)
    refused(lambda: world_model.load(path, config=TINY_CONFIG, verify=False), words)


@pytest.fixture(scope="module")
def head64_layout() -> dict[str, dict[str, torch.Tensor]]:
    """An official-layout state of a model whose sizes can be inferred (64-wide, 1 head)."""
    config = WorldModelConfig(
        img_size=32,
        num_frames=8,
        encoder=EncoderConfig(embed_dim=64, depth=1, num_heads=1, mlp_ratio=2.0),
        predictor=PredictorConfig(predictor_embed_dim=64, depth=1, num_heads=1, mlp_ratio=2.0),
    )
    layout: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "predictor": {}}
    for key, value in world_model.build(config, seed=0).state_dict().items():
        part, rest = key.split(".", 1)
        layout[part][f"module.backbone.{rest}"] = value
    return Quiet(layout)


@FUZZ
@given(
    name=st.sampled_from(
        [
            "encoder.patch_embed.proj.weight",
            "encoder.blocks.0.mlp.fc1.weight",
            "predictor.predictor_blocks.0.mlp.fc1.weight",
            "predictor.action_encoder.weight",
        ]
    ),
    shape=st.lists(st.integers(0, 3), max_size=6),
)
def test_sizes_inferred_from_odd_tensors_are_refused(
    head64_layout: dict, name: str, shape: list[int]
) -> None:
    """No config given: sizes are read off tensor shapes, which may have any rank."""
    part, rest = name.split(".", 1)
    key = f"module.backbone.{rest}"
    layout = {p: dict(tensors) for p, tensors in head64_layout.items()}
    layout[part][key] = torch.zeros(shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "odd.pt"
        torch.save(layout, path)
        refused(lambda: world_model.load(path, verify=False))


def test_sizes_are_inferred_from_the_unaltered_layout(tmp_path: Path, head64_layout: dict) -> None:
    path = tmp_path / "ok.pt"
    torch.save({part: dict(tensors) for part, tensors in head64_layout.items()}, path)
    with pytest.warns(world_model.AssumedSizesWarning, match="assuming 256 px"):
        assert world_model.load(path, verify=False).config.encoder.embed_dim == 64
