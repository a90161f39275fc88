"""World model: V-JEPA 2 video encoder + action-conditioned predictor, compatible with the
official checkpoints (``load``), randomly initialised from a preset (``build``), or named by a
model spec (``resolve_model``: "state", "random:<preset>", a path or a bundled name)."""

from world_model.checkpoint import load, save
from world_model.config import EncoderConfig, PredictorConfig, WorldModelConfig
from world_model.devices import DeviceError, resolve_device
from world_model.errors import (
    AssumedSizesWarning,
    CheckpointError,
    CheckpointKeyError,
    CheckpointNotFoundError,
    ChecksumError,
    ImageError,
    ImageResizeWarning,
    InputShapeError,
    ModelSpecError,
    NoCriticError,
    NoReadoutError,
    NoSubgoalsError,
    WorldModelError,
)
from world_model.model import WorldModel, build
from world_model.resolve import MODEL_SPEC_HELP, resolve_model

__all__ = [
    "AssumedSizesWarning",
    "MODEL_SPEC_HELP",
    "CheckpointError",
    "CheckpointKeyError",
    "CheckpointNotFoundError",
    "ChecksumError",
    "DeviceError",
    "EncoderConfig",
    "ImageError",
    "ImageResizeWarning",
    "InputShapeError",
    "ModelSpecError",
    "NoCriticError",
    "NoSubgoalsError",
    "NoReadoutError",
    "PredictorConfig",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelError",
    "build",
    "load",
    "resolve_device",
    "resolve_model",
    "save",
]
