"""One way to name a world model: ``resolve_model(spec)`` turns the string a user types (CLI
flag, ROS parameter, script argument, ``Planner.from_config(world_model=...)``) into a model.

Spec grammar (``MODEL_SPEC_HELP``):

- ``state``: the ground-truth-state model (``StateWorldModel``; sim only, it reads the
  end-effector state, not the pixels);
- ``random:<preset>``: an untrained model of a ``configs/model`` preset, seed 0 (pipeline and
  latency checks only);
- ``<path or bundled name>``: an official ``.pt``, a converted folder, or a name in
  ``world_model/checkpoints`` (``sim-small``), loaded by ``world_model.load``;
- ``<path>#<preset>``: the same with the sizes of a preset (an official ``.pt`` whose sizes
  cannot be inferred, e.g. ``vjepa2_ac_tiny.pt#tiny``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from robots.config import CONFIG_DIR
from world_model.checkpoint import CONFIG_FILE, find_checkpoint, load
from world_model.checksums import Verify
from world_model.config import load_model_config
from world_model.errors import CheckpointNotFoundError, ModelSpecError
from world_model.model import WorldModel, build
from world_model.state_model import StateWorldModel

STATE = "state"
RANDOM_PREFIX = "random:"
MODEL_SPEC_HELP = (
    "state, random:<preset> (untrained), a checkpoint path, a bundled name (sim-small), or "
    "<path>#<preset>"
)


def resolve_model(
    spec: str | Path,
    device: str | torch.device = "cpu",
    verify: Verify = True,
) -> WorldModel | StateWorldModel:
    """The world model a spec names (see the module doc), in eval mode on ``device``.

    Args:
        spec: ``state``, ``random:<preset>``, a path or bundled name, or ``<path>#<preset>``.
        device: where to put it.
        verify: sha256 check of a checkpoint before loading (see ``world_model.load``).

    Raises:
        ModelSpecError: an empty spec or not a string/path.
        CheckpointNotFoundError: no such checkpoint (the message lists the bundled names and,
            when the spec is a model preset, how to ask for an untrained one).
        FileNotFoundError: ``random:<preset>`` with an unknown preset (lists the known ones).
        CheckpointError: a checkpoint that fails its checks.
    """
    text = _spec_text(spec)
    if text == STATE:
        return StateWorldModel().to(device).eval()
    if text.startswith(RANDOM_PREFIX):
        return build(text.removeprefix(RANDOM_PREFIX), device=device, seed=0)
    path, _, preset = text.partition("#")
    try:
        return load(path, config=preset or None, device=device, verify=verify)
    except CheckpointNotFoundError as error:
        raise _with_preset_hint(error, path) from None


def check_model_spec(spec: str | Path) -> None:
    """Raise what ``resolve_model(spec)`` would for a spec that names nothing (empty, an
    unknown preset, no checkpoint there), without loading anything: a quick check before
    starting nodes or long jobs. A checkpoint that exists is not read (its checks come at
    loading)."""
    text = _spec_text(spec)
    if text == STATE:
        return
    if text.startswith(RANDOM_PREFIX):
        load_model_config(text.removeprefix(RANDOM_PREFIX))
        return
    path, _, preset = text.partition("#")
    try:
        find_checkpoint(path)
    except CheckpointNotFoundError as error:
        raise _with_preset_hint(error, path) from None
    if preset:
        load_model_config(preset)


def spec_views(spec: str | Path) -> int:
    """Camera views per image the model a spec names takes (``WorldModelConfig.views``), read
    from its config without loading weights: 1 for ``state`` and official checkpoints.

    Raises:
        what :func:`check_model_spec` raises for a spec that names nothing.
    """
    check_model_spec(spec)
    text = _spec_text(spec)
    if text == STATE:
        return 1
    if text.startswith(RANDOM_PREFIX):
        return load_model_config(text.removeprefix(RANDOM_PREFIX)).views
    path, _, preset = text.partition("#")
    if preset:
        return load_model_config(preset).views
    config = find_checkpoint(path) / CONFIG_FILE
    if not config.is_file():
        return 1
    try:
        views = json.loads(config.read_text()).get("views", 1)
    except (OSError, ValueError, AttributeError):
        return 1  # a broken config is loading's to report, with its own message
    return views if isinstance(views, int) and not isinstance(views, bool) else 1


def _spec_text(spec: str | Path) -> str:
    """The spec as stripped text; ModelSpecError for an empty one or another type."""
    if not isinstance(spec, str | Path):
        raise ModelSpecError(
            f"a model spec is a string ({MODEL_SPEC_HELP}), got {type(spec).__name__}"
        )
    text = str(spec).strip()
    if not text:
        raise ModelSpecError(f"empty model spec; give {MODEL_SPEC_HELP}")
    return text


def _with_preset_hint(error: CheckpointNotFoundError, path: str) -> CheckpointNotFoundError:
    """``error``, saying how to ask for an untrained model when ``path`` is a preset name."""
    if (CONFIG_DIR / "model" / f"{path}.yaml").is_file():
        return CheckpointNotFoundError(
            f"{error}; {path!r} is a model preset: write {RANDOM_PREFIX}{path} for an "
            "untrained model of its sizes"
        )
    return error
