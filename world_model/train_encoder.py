"""The V-JEPA objective for encoder training: from the visible (context) tokens of a clip, a
small predictor regresses the EMA target encoder's layer-normed latents of the masked tokens
(L1), optionally plus an anti-collapse regulariser on the context encoder's latents of the whole
clip (``encoder.regularizer``). The target encoder becomes the world model's encoder."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from robots.config import ConfigError
from world_model.config import mlp_hidden_dim
from world_model.encoder import VideoEncoder, layer_norm_latents, preprocess_images
from world_model.layers import Block, init_weights, rope_table
from world_model.masks import MaskSpec, sample_mask_indices
from world_model.model import WorldModel
from world_model.regularizers import regularizer
from world_model.train_loop import ema_update


def token_positions(grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """[L, 3] (frame, row, col) of every token, in the encoder's order."""
    grid_t, grid_h, grid_w = grid
    ids = torch.arange(grid_t * grid_h * grid_w, device=device)
    return torch.stack((ids // (grid_h * grid_w), (ids // grid_w) % grid_h, ids % grid_w), -1)


def gathered_rope(positions: torch.Tensor, index: torch.Tensor, head_dim: int):
    """Rotary tables of the tokens ``index`` [B, K] -> (cos, sin) [B, 1, K, head_dim]."""
    cos, sin = rope_table(positions[:, 0], positions[:, 1], positions[:, 2], head_dim)
    return cos[index].unsqueeze(1), sin[index].unsqueeze(1)


def encode_visible(encoder: VideoEncoder, clip: torch.Tensor, index: torch.Tensor):
    """Run ``encoder`` on the tokens ``index`` [B, K] of ``clip`` [B, 3, T, H, W] only.

    Returns:
        [B, K, D] encoder output of those tokens (final LayerNorm applied).
    """
    config = encoder.config
    grid = (
        clip.shape[2] // config.tubelet_size,
        clip.shape[3] // config.patch_size,
        clip.shape[4] // config.patch_size,
    )
    tokens = encoder.patch_embed(clip)
    tokens = torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1]))
    cos, sin = gathered_rope(token_positions(grid, clip.device), index, encoder.head_dim)
    for block in encoder.blocks:
        tokens, _ = block(tokens, cos, sin)
    return encoder.norm(tokens)


class MaskPredictor(nn.Module):
    """Narrow transformer: context latents + a learned mask token at each target position
    (positions given by 3-D RoPE) -> predicted latents at the targets."""

    def __init__(self, latent_dim: int, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.head_dim = dim // num_heads
        self.embed = nn.Linear(latent_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        hidden = mlp_hidden_dim(dim, 4.0)
        self.blocks = nn.ModuleList(Block(dim, num_heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, latent_dim)
        init_weights(self, self.blocks)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context, context_index, target_index, positions) -> torch.Tensor:
        """context [B, Kc, D], indices [B, Kc] / [B, Kt], positions [L, 3] -> [B, Kt, D]."""
        batch, count = target_index.shape
        masked = self.mask_token.expand(batch, count, -1).to(context.dtype)
        tokens = torch.cat((self.embed(context), masked), dim=1)
        index = torch.cat((context_index, target_index), dim=1)
        cos, sin = gathered_rope(positions, index, self.head_dim)
        for block in self.blocks:
            tokens, _ = block(tokens, cos, sin)
        return self.proj(self.norm(tokens[:, -count:]))


class MaskedVideoModel(nn.Module):
    """The trainable pair (context encoder, mask predictor) as one module (for DDP)."""

    def __init__(self, encoder: VideoEncoder, predictor: MaskPredictor) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, clip, context_index, target_index, positions) -> torch.Tensor:
        """Predicted latents [B, Kt, D] of the target tokens from the context tokens; with
        ``context_index`` None, the layer-normed latents [B, L, D] of the whole clip (what the
        anti-collapse regulariser looks at)."""
        if context_index is None:
            return layer_norm_latents(self.encoder(clip).float())
        context = encode_visible(self.encoder, clip, context_index)
        return self.predictor(context, context_index, target_index, positions)


def frames_to_clip(frames: torch.Tensor, img_size: int, tubelet: int, device) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> normalised [B, 3, T', S, S]; T = 1 is repeated to a tubelet."""
    batch, length = frames.shape[:2]
    pixels = preprocess_images(frames.flatten(0, 1), img_size, device)
    clip = pixels.unflatten(0, (batch, length)).transpose(1, 2)
    if length == 1:
        clip = clip.expand(-1, -1, tubelet, -1, -1)
    if clip.shape[2] % tubelet:
        raise ValueError(f"clip_len {length} must be 1 or a multiple of tubelet_size {tubelet}")
    return clip


class EncoderObjective:
    """V-JEPA training state: the trainable ``module`` (context encoder + mask predictor), the
    EMA target encoder, mask families and the EMA momentum schedule."""

    metric_names = ("loss", "regularizer")

    def __init__(self, model: WorldModel, config, seed: int, rank: int, total_steps: int):
        """Args: model: world model whose encoder is trained; config: ``EncoderSection``.

        Raises:
            ConfigError: a multi-view model (its masks would span a single view's grid; train
                it with ``jepa-mpc train joint``)."""
        if model.config.views != 1:
            raise ConfigError(
                f"the V-JEPA encoder stage trains single-view models; this one takes "
                f"{model.config.views} views (train it end to end: jepa-mpc train joint)"
            )
        self.model, self.config = model, config
        self.seed, self.rank, self.total_steps = seed, rank, total_steps
        latent_dim = model.config.encoder.embed_dim
        with torch.device(model.device):
            predictor = MaskPredictor(
                latent_dim, config.predictor_dim, config.predictor_depth, config.predictor_heads
            )
        self.module = MaskedVideoModel(model.encoder, predictor).train()
        self.target = copy.deepcopy(model.encoder).eval().requires_grad_(False)
        model.predictor.requires_grad_(False)
        self.specs = [MaskSpec(**spec) for spec in config.masks]

    def losses(self, module: nn.Module, batch: dict, autocast) -> dict[str, torch.Tensor]:
        """L1 between predicted and target latents at masked tokens, averaged over mask
        families (each family draws its own masks; masks are a function of seed, rank, step)."""
        cfg = self.model.config
        clip = frames_to_clip(batch["frames"], cfg.img_size, cfg.tubelet_size, self.model.device)
        grid = (clip.shape[2] // cfg.tubelet_size, cfg.grid_size, cfg.grid_size)
        positions = token_positions(grid, clip.device)
        with torch.no_grad(), autocast():
            target = layer_norm_latents(self.target(clip).float())
        total = 0.0
        for spec in self.specs:
            context_index, target_index = sample_mask_indices(
                spec, len(clip), grid, self._generator
            )
            context_index = context_index.to(clip.device)
            target_index = target_index.to(clip.device)
            with autocast():
                predicted = module(clip, context_index, target_index, positions).float()
            wanted = torch.gather(
                target, 1, target_index[..., None].expand(-1, -1, target.shape[-1])
            )
            total = total + (predicted - wanted).abs().mean()
        loss = total / len(self.specs)
        reg = loss.new_zeros(())
        if self.config.regularizer.kind != "none":
            with autocast():
                whole = module(clip, None, None, None)
            reg = regularizer(whole, self.config.regularizer, self._generator)
            loss = loss + self.config.regularizer.weight * reg
        return {"loss": loss, "regularizer": reg}

    def begin_step(self, step: int) -> None:
        """Seed this step's masks from (seed, rank, step), so a resumed run draws the same."""
        state = np.random.SeedSequence([self.seed, self.rank, step]).generate_state(1)[0]
        self._generator = torch.Generator().manual_seed(int(state))

    def momentum(self, step: int) -> float:
        """EMA momentum, linear from ema[0] to ema[1] over the run."""
        start, end = self.config.ema
        return start + (end - start) * min(1.0, step / max(1, self.total_steps))

    def end_step(self, step: int) -> None:
        """EMA update of the target encoder from the context encoder."""
        ema_update(self.target, self.model.encoder, self.momentum(step))

    def extra_state(self) -> dict[str, dict]:
        """State beyond the trainable module that a resume needs."""
        return {"target": self.target.state_dict()}

    def load_extra_state(self, state: dict[str, dict]) -> None:
        self.target.load_state_dict(state["target"])

    def final_model(self) -> WorldModel:
        """The world model with the EMA target encoder as its encoder."""
        self.model.encoder.load_state_dict(self.target.state_dict())
        return self.model
