"""The world model and planner behind ``goal_planner``: the ``checkpoint`` and ``verify``
parameters turned into a ``planner.Planner``, and a one-line account of how the checkpoint was
verified (for ``/diagnostics``)."""

from __future__ import annotations

VERIFY_MODES = {"true": True, "strict": "strict", "false": False}


class ModelSetupError(ValueError):
    """A ``verify`` value the node does not know (the message lists the known ones)."""


def parse_verify(value: object) -> bool | str:
    """The ``verify`` parameter (``true`` | ``strict`` | ``false``, as a bool or a string) as
    ``world_model.load``'s ``verify`` argument (True | "strict" | False).

    Raises:
        ModelSetupError: any other value.
    """
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key not in VERIFY_MODES:
        raise ModelSetupError(
            f"verify must be one of {', '.join(VERIFY_MODES)}, got {value!r} (strict: refuse a "
            "checkpoint without a sha256 record; docs/security.md)"
        )
    return VERIFY_MODES[key]


def verification(checkpoint: str, verify: bool | str) -> str:
    """How a checkpoint that ``world_model.load`` accepted was checked, in one line."""
    if checkpoint == "state" or checkpoint.startswith("random:"):
        return f"none needed ({checkpoint}: no checkpoint file)"
    if verify is False:
        return "off (verify=false): sha256 not checked"
    from world_model.checkpoint import find_checkpoint
    from world_model.checksums import SIDECAR_SUFFIX, folder_records

    path = find_checkpoint(checkpoint)
    if path.is_dir():
        records = [record.name for record, _ in folder_records(path)]
    else:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        records = [sidecar.name] if sidecar.is_file() else []
    if not records:
        return "UNVERIFIED: no sha256 record (loaded with a warning; verify=strict refuses it)"
    return f"sha256 verified against {', '.join(records)} ({verify_name(verify)})"


def verify_name(verify: bool | str) -> str:
    """The parameter spelling of a ``verify`` value."""
    return next(name for name, value in VERIFY_MODES.items() if value == verify)


def preset_for(config: str, checkpoint: str) -> str:
    """The preset the ``config`` parameter names: itself, or where it is empty
    ``planner.config.default_preset`` (fast for a checkpoint that ships a proposal policy,
    such as sim-small; else icem)."""
    from planner.config import default_preset

    return config or default_preset(checkpoint)


def build_planner(config: str, checkpoint: str, device: str, overrides: list[str], verify=True):
    """The library planner for a preset (resolved: ``preset_for``) and a world model.

    ``checkpoint``: a model spec for ``world_model.resolve_model``: a path or bundled name;
    ``state`` = the ground-truth-state model (sim only: it reads the state, not the pixels);
    ``random:<preset>`` = an untrained model of a preset (plumbing and latency checks only).

    Raises:
        CheckpointError (ChecksumError), CheckpointNotFoundError, DeviceError, ConfigError:
            one line each, naming the file, device or key.
    """
    from planner import Planner

    return Planner.from_config(
        config,
        world_model=checkpoint,
        device=device,
        overrides=overrides,
        verify=verify,
    )
