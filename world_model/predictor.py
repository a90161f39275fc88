"""The action-conditioned predictor: per frame the tokens [action, state, patches], block-causal
attention over frames, 3-D RoPE; frame t's output predicts frame t+1's latent. ``forward`` runs
all frames at once (teacher forcing); ``step`` runs one frame against a KV cache (planning)."""

from __future__ import annotations

import torch
from torch import nn

from world_model.config import WorldModelConfig, mlp_hidden_dim
from world_model.errors import InputShapeError
from world_model.layers import Block, KVCache, rope_table

COND_TOKENS = 2  # action and state tokens lead each frame


class ACPredictor(nn.Module):
    """V-JEPA 2-AC predictor; parameter names match the release (``extrinsics_encoder`` is
    unused but kept so that the official checkpoint loads strictly)."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        pred = config.predictor
        dim, width = config.encoder.embed_dim, pred.predictor_embed_dim
        self.config = config
        self.num_patches = config.num_patches
        self.tokens_per_frame = COND_TOKENS + self.num_patches
        self.predictor_embed = nn.Linear(dim, width)
        self.action_encoder = nn.Linear(pred.action_embed_dim, width)
        self.state_encoder = nn.Linear(pred.action_embed_dim, width)
        self.extrinsics_encoder = nn.Linear(pred.action_embed_dim - 1, width)
        hidden = mlp_hidden_dim(width, pred.mlp_ratio)
        self.predictor_blocks = nn.ModuleList(
            Block(width, pred.num_heads, hidden) for _ in range(pred.depth)
        )
        self.predictor_norm = nn.LayerNorm(width, eps=1e-6)
        self.predictor_proj = nn.Linear(width, dim)
        self.head_dim = width // pred.num_heads
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.reset_rope()

    def reset_rope(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the rotary tables rope_cos/rope_sin [max_frames, 2 + N, head_dim]
        (after a load onto the meta device, for instance)."""
        device = self.predictor_proj.weight.device if device is None else device
        cos, sin = self._rope_tables(self.config, self.head_dim, device)
        self.rope_cos, self.rope_sin = cos, sin

    @staticmethod
    def _rope_tables(
        config: WorldModelConfig, head_dim: int, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables for every token of every frame. Patches get (frame, row, col), the
        columns of a multi-view model's later views continuing past the first's (the views sit
        side by side); the action and state tokens get (frame, 0, 0), i.e. only the temporal
        rotation."""
        grid, frames = config.grid_size, config.max_frames
        ids = torch.arange(grid * grid, device=device).repeat(config.views)
        view = torch.arange(config.views, device=device).repeat_interleave(grid * grid)
        cond = torch.zeros(COND_TOKENS, dtype=torch.long, device=device)
        row = torch.cat((cond, ids // grid))
        col = torch.cat((cond, ids % grid + view * grid))
        frame = torch.arange(frames, device=device).repeat_interleave(row.numel())
        cos, sin = rope_table(frame, row.repeat(frames), col.repeat(frames), head_dim)
        return cos.view(frames, row.numel(), -1), sin.view(frames, row.numel(), -1)

    def _check_inputs(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor
    ) -> None:
        """latents [B, T, N, D], actions and states [B, T, 7], else an InputShapeError that
        names the layout (the release's predictor takes its tokens flattened, [B, T·N, D])."""
        n, d = self.num_patches, self.config.encoder.embed_dim
        if latents.ndim == 3 and latents.shape[-1] == d and latents.shape[1] % n == 0:
            raise InputShapeError(
                f"latents are {tuple(latents.shape)}, the release's flattened [B, T·N, D] "
                f"layout; this predictor takes [B, T, N, D] frames (N = {n}): pass "
                f"latents.unflatten(1, (-1, {n}))"
            )
        if latents.ndim != 4 or tuple(latents.shape[2:]) != (n, d):
            raise InputShapeError(f"latents must be [B, T, {n}, {d}], got {tuple(latents.shape)}")
        expected = (*latents.shape[:2], self.action_encoder.in_features)
        for name, tensor in (("actions", actions), ("states", states)):
            if tuple(tensor.shape) != expected:
                raise InputShapeError(
                    f"{name} must be [B, T, {expected[2]}] = {expected} to match latents "
                    f"{tuple(latents.shape)}, got {tuple(tensor.shape)}"
                )

    def _check_frames(self, frames: int) -> None:
        if frames > self.config.max_frames:
            raise ValueError(
                f"{frames} frames exceed the predictor's {self.config.max_frames} "
                f"(num_frames / tubelet_size); shorten the horizon"
            )

    def _tokens(self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor):
        """[B, T, N, D], [B, T, 7], [B, T, 7] -> tokens [B, T * (2 + N), width]."""
        patches = self.predictor_embed(latents)
        action = self.action_encoder(actions).unsqueeze(2)
        state = self.state_encoder(states).unsqueeze(2)
        return torch.cat((action, state, patches), dim=2).flatten(1, 2)

    def _readout(self, tokens: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Tokens [B, T * (2 + N), width] -> predictions [B, T, N, D] (raw, not layer-normed);
        ``latents`` [B, T, N, D] are the inputs, added back for a ``residual`` predictor."""
        tokens = tokens.unflatten(1, (latents.shape[1], self.tokens_per_frame))
        output = self.predictor_proj(self.predictor_norm(tokens[:, :, COND_TOKENS:]))
        if self.config.predictor.residual:
            output = output + latents.to(output.dtype)
        return output

    def forward(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor
    ) -> torch.Tensor:
        """All frames at once, block-causal (frame t sees frames 0..t).

        Args:
            latents: [B, T, N, D] layer-normed encoder latents of frames 0..T-1.
            actions: [B, T, 7] action taken after each frame. states: [B, T, 7] ee state.

        Returns:
            [B, T, N, D] raw predictions of frames 1..T.
        """
        self._check_inputs(latents, actions, states)
        frames = latents.shape[1]
        self._check_frames(frames)
        tokens = self._tokens(latents, actions, states)
        frame_of = torch.arange(frames, device=tokens.device).repeat_interleave(
            self.tokens_per_frame
        )
        mask = frame_of[:, None] >= frame_of[None, :]  # [L, L] True = may attend
        cos, sin = self.rope_cos[:frames].flatten(0, 1), self.rope_sin[:frames].flatten(0, 1)
        for block in self.predictor_blocks:
            tokens, _ = block(tokens, cos, sin, attn_mask=mask)
        return self._readout(tokens, latents)

    def step(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        state: torch.Tensor,
        frame: int,
        cache: list[KVCache] | None = None,
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """One frame against cached keys/values of frames 0..frame-1 (block-causal, exact).

        Args:
            latent: [B, N, D] layer-normed latent of frame ``frame``.
            action: [B, 7]; state: [B, 7].
            frame: index of this frame (its temporal RoPE position).
            cache: one (keys, values) per block from the previous step, or None at frame 0.

        Returns:
            ([B, N, D] raw prediction of frame ``frame + 1``, cache incl. this frame).
        """
        self._check_frames(frame + 1)
        tokens = self._tokens(latent[:, None], action[:, None], state[:, None])
        cos, sin = self.rope_cos[frame], self.rope_sin[frame]
        new_cache = []
        for index, block in enumerate(self.predictor_blocks):
            past = None if cache is None else cache[index]
            tokens, kv = block(tokens, cos, sin, past=past)
            new_cache.append(kv)
        return self._readout(tokens, latent[:, None])[:, 0], new_cache
