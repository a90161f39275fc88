"""World model: V-JEPA 2 video encoder + action-conditioned predictor, compatible with the
official checkpoints (``load``), randomly initialised from a preset (``build``)."""

from world_model.checkpoint import load, save
from world_model.config import EncoderConfig, PredictorConfig, WorldModelConfig
from world_model.devices import DeviceError, resolve_device
from world_model.errors import (
    CheckpointError,
    CheckpointKeyError,
    CheckpointNotFoundError,
    ChecksumError,
    ImageError,
    InputShapeError,
    NoReadoutError,
    WorldModelError,
)
from world_model.model import WorldModel, build

__all__ = [
    "CheckpointError",
    "CheckpointKeyError",
    "CheckpointNotFoundError",
    "ChecksumError",
    "DeviceError",
    "EncoderConfig",
    "ImageError",
    "InputShapeError",
    "NoReadoutError",
    "PredictorConfig",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelError",
    "build",
    "load",
    "resolve_device",
    "save",
]
