"""Turning a device name from a user ("auto", "cpu", "cuda", "cuda:1", a ``torch.device``) into
a ``torch.device`` that exists on this machine, or one clear ``DeviceError``."""

from __future__ import annotations

import torch

from world_model.errors import WorldModelError

DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


class DeviceError(WorldModelError):
    """A device name that is malformed or names hardware this machine does not have."""


def resolve_device(spec: str | torch.device) -> torch.device:
    """``spec`` as a usable ``torch.device``: "auto" = CUDA when available, else CPU.

    Raises:
        DeviceError: not a device name, or a CUDA/MPS device that is not there (e.g.
            ``device="cuda"`` with a CPU-only torch: "no CUDA device ...: use device='cpu'").
    """
    if not isinstance(spec, str | torch.device):
        raise DeviceError(
            f"device must be a name such as 'auto', 'cpu' or 'cuda:0', got {spec!r} "
            f"({type(spec).__name__})"
        )
    if str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device {spec!r}; use one of {', '.join(DEVICE_TYPES)} (or 'cuda:N')"
        ) from None
    if device.type == "cuda":
        _check_cuda(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"no MPS device on this machine for device={spec!r}: use device='cpu'")
    elif device.type not in ("cpu", "cuda", "mps", "meta"):
        raise DeviceError(f"unsupported device {spec!r}; use one of {', '.join(DEVICE_TYPES)}")
    return device


def _check_cuda(device: torch.device) -> None:
    """Raise DeviceError unless ``device`` (type cuda) exists."""
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "none is visible"
        raise DeviceError(
            f"no CUDA device for device={str(device)!r} ({why}): use device='cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"no CUDA device {device.index}: this machine has {count} (cuda:0..cuda:{count - 1})"
        )
