"""Errors raised by the world model: bad images, bad inputs and bad checkpoints, each a
``ValueError`` (or ``FileNotFoundError``) subclass whose message says what to fix."""

from __future__ import annotations


class WorldModelError(ValueError):
    """Base class of the world model's input and checkpoint errors."""


class ImageError(WorldModelError):
    """An image with the wrong dtype, rank or channel count (expected uint8 RGB HWC)."""


class InputShapeError(WorldModelError):
    """Latents, states or actions whose shapes do not fit the model."""


class ModelSpecError(WorldModelError):
    """A model spec (``world_model.resolve_model``) that names no model: empty, or not a
    string."""


class NoReadoutError(WorldModelError):
    """A state readout was asked of a model that has none (``config.readout.enabled`` false)."""


class NoCriticError(WorldModelError):
    """A cost-to-go was asked of a model that has no critic (``config.critic.enabled`` false)."""


class NoSubgoalsError(WorldModelError):
    """A subgoal was asked of a model that has no subgoal generator (``config.subgoals.enabled``
    false)."""


class CheckpointError(WorldModelError):
    """A checkpoint that cannot be read safely or does not fit the model."""


class CheckpointKeyError(CheckpointError):
    """A missing, unexpected or mis-shaped tensor in a checkpoint (the message names it)."""


class ChecksumError(CheckpointError):
    """A checkpoint file whose sha256 differs from its card or checksum record (the message
    names the file, the expected and the actual hash), or that has no record when one is
    required."""


class AssumedSizesWarning(UserWarning):
    """An official checkpoint was loaded without ``config=``: its image size and head counts
    are not recorded in the file, so the defaults of the released models were assumed."""


class ImageResizeWarning(UserWarning):
    """Images that the world model must crop or resize to its input size (``img_size``
    square): a camera at another size, a goal from another camera, training frames collected
    at another size. Said once per cause, with how to avoid it."""


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint at the given path, and no bundled checkpoint of that name."""
