"""Turning a device name from a user ("auto", "cpu", "cuda", "cuda:1", a ``torch.device``) into
a ``torch.device`` that exists on this machine, or one clear ``DeviceError``."""

from __future__ import annotations

import torch

from world_model.errors import WorldModelError

DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")


class DeviceError(WorldModelError):
    """A device name that is malformed or names hardware this machine does not have."""


def resolve_device(spec: str | torch.device, option: str | None = None) -> torch.device:
    """``spec`` as a usable ``torch.device``: "auto" = CUDA when available, else CPU.

    Args:
        spec: "auto", "cpu", "cuda", "cuda:N", "mps" or a ``torch.device``.
        option: the command-line option ``spec`` came from (e.g. "--device"): the messages then
            name it ("no CUDA device (torch was built without CUDA): use --device cpu").

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
        _check_cuda(device, option)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        if option:
            raise DeviceError(f"no MPS device on this machine: use {option} cpu")
        raise DeviceError(f"no MPS device on this machine for device={spec!r}: use device='cpu'")
    elif device.type not in ("cpu", "cuda", "mps", "meta"):
        raise DeviceError(f"unsupported device {spec!r}; use one of {', '.join(DEVICE_TYPES)}")
    return device


def _check_cuda(device: torch.device, option: str | None = None) -> None:
    """Raise DeviceError unless ``device`` (type cuda) exists (``option``: see resolve_device)."""
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "none is visible"
        if option:
            raise DeviceError(f"no CUDA device ({why}): use {option} cpu")
        raise DeviceError(
            f"no CUDA device for device={str(device)!r} ({why}): use device='cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        where = f" for {option}" if option else ""
        raise DeviceError(
            f"no CUDA device {device.index}{where}: this machine has {count} "
            f"(cuda:0..cuda:{count - 1})"
        )
