"""Model sizes as typed dataclasses (the same field names as the public V-JEPA 2-AC release's
config, so its JSON loads as is) and loading of the presets in ``configs/model/``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robots.config import ConfigError, apply_overrides, from_dict, load_config


@dataclass
class EncoderConfig:
    """Video ViT encoder sizes (defaults: ViT-g/16 of the AC release)."""

    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 22
    mlp_ratio: float = 48 / 11
    use_rope: bool = True


@dataclass
class PredictorConfig:
    """Action-conditioned predictor sizes (defaults: the AC release)."""

    predictor_embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    use_rope: bool = True
    action_embed_dim: int = 7
    is_frame_causal: bool = True
    # Not in the release (which predicts the next latent outright): predict the change from the
    # current latent instead (output = input latent + projection, projection zero-initialised).
    # Small models trained on little data plan far better this way; official checkpoints load
    # with the default False.
    residual: bool = False


@dataclass
class ReadoutConfig:
    """The optional state readout head (``world_model.readout``; not in the release).
    Checkpoints without it (every official one) load with ``enabled: false``."""

    enabled: bool = False
    hidden: int = 256


@dataclass
class CriticConfig:
    """The optional critic (``world_model.critic``; not in the release): a goal-conditioned
    cost-to-go V(z, s, z_goal) >= 0 in control steps. Checkpoints without it (every official
    one) load with ``enabled: false``.

    Attributes:
        enabled: whether the model has the head.
        hidden: width of its per-token MLP and head.
        use_state: whether it also reads the end-effector state of the scored frame.
        max_steps: the cost-to-go of a goal the data never reaches (the training target of
            negative goals), in control steps.
    """

    enabled: bool = False
    hidden: int = 256
    use_state: bool = True
    max_steps: int = 64


@dataclass
class SubgoalConfig:
    """The optional subgoal generator (``world_model.subgoals``; not in the release): a
    goal-conditioned proposer of the latent k control steps ahead, for the planner's
    hierarchical mode. Checkpoints without it (every official one) load with ``enabled:
    false``.

    Attributes:
        enabled: whether the model has the head.
        hidden: width of its transformer. depth: its layers. heads: its attention heads.
        max_ahead: the largest k it was trained for (control steps).
    """

    enabled: bool = False
    hidden: int = 256
    depth: int = 4
    heads: int = 4
    max_ahead: int = 6


@dataclass
class WorldModelConfig:
    """Encoder + predictor sizes. ``num_frames // tubelet_size`` bounds the rollout length."""

    img_size: int = 256
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 64
    # Camera views per image, side by side (W = views x H; e.g. exterior + wrist): each view is
    # encoded as its own img_size square and their tokens are one frame of views x grid^2
    # tokens (columns continue across views). 1 = the release's single view.
    views: int = 1
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    subgoals: SubgoalConfig = field(default_factory=SubgoalConfig)

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of {self.patch_size}")
        if not 1 <= self.views <= 4:
            raise ConfigError(f"views must be 1 to 4 camera views per image, got {self.views}")
        for name, dim, heads in (
            ("encoder", self.encoder.embed_dim, self.encoder.num_heads),
            ("predictor", self.predictor.predictor_embed_dim, self.predictor.num_heads),
        ):
            if dim % heads or (dim // heads) % 2:
                raise ConfigError(f"{name}: dim {dim} / {heads} heads must give an even head dim")
        if not (self.encoder.use_rope and self.predictor.use_rope):
            raise ConfigError("only 3-D RoPE models are supported (use_rope: true)")
        if not self.predictor.is_frame_causal:
            raise ConfigError("only block-causal predictors are supported (is_frame_causal: true)")
        if self.max_frames < 1:
            raise ConfigError(f"num_frames {self.num_frames} < tubelet_size {self.tubelet_size}")

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Tokens per frame (N): ``views`` x grid^2."""
        return self.views * self.grid_size**2

    @property
    def max_frames(self) -> int:
        """Longest frame sequence the predictor accepts (the release's mask size)."""
        return self.num_frames // self.tubelet_size

    def to_dict(self) -> dict[str, Any]:
        """Plain nested mapping (what ``config.json`` holds)."""
        return asdict(self)


def mlp_hidden_dim(dim: int, ratio: float) -> int:
    """Hidden width of a block's MLP (``round`` guards against 1408 * 48/11 = 6143.999...)."""
    return int(round(dim * ratio))


def config_from_dict(data: dict[str, Any], where: str = "WorldModelConfig") -> WorldModelConfig:
    """Build a config from a nested mapping; unknown keys raise ``ConfigError`` by name."""
    return from_dict(WorldModelConfig, data, where=where)


def load_model_config(
    name_or_path: str | Path, overrides: list[str] | None = None
) -> WorldModelConfig:
    """Load a preset name (``configs/model/<name>.yaml``), a YAML path or a JSON path.

    Returns:
        WorldModelConfig.
    """
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"model config file not found: {path}")
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if overrides:
            data = apply_overrides(data, overrides)
        return config_from_dict(data, where=path.name)
    return load_config(WorldModelConfig, name_or_path, "model", overrides)
