"""Transformer parts shared by the encoder and the predictor: 3-D rotary position embedding
(laid out as in the V-JEPA 2 release) and a pre-norm block whose attention can use a KV cache."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KVCache = tuple[torch.Tensor, torch.Tensor]  # keys, values: [B, heads, L, head_dim] each


def rope_segment_dim(head_dim: int) -> int:
    """Channels of a head rotated by each of time, height and width (the rest is not rotated).

    The release uses ``2 * ((head_dim // 3) // 2)``: 20 of 64, 8 of 24.
    """
    return 2 * ((head_dim // 3) // 2)


def _rope_angles(positions: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [M, dim] for positions [M]; frequencies 1/10000^(i/(dim/2)), TILED (not
    interleaved) along the channel: [f0..f_{k-1}, f0..f_{k-1}] as in the release."""
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.to(torch.float32)[:, None] * omega[None, :]
    return angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)


def rope_table(
    frame: torch.Tensor, row: torch.Tensor, col: torch.Tensor, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cos/sin for 3-D RoPE.

    Args:
        frame, row, col: [M] positions of each token (action/state tokens pass row = col = 0,
            which rotates by angle 0, i.e. leaves those channels as they are).
        head_dim: channels per head.

    Returns:
        (cos, sin), each [M, head_dim]; channels past the three segments get cos 1, sin 0.
    """
    seg = rope_segment_dim(head_dim)
    cos_parts, sin_parts = [], []
    for positions in (frame, row, col):
        cos, sin = _rope_angles(positions, seg)
        cos_parts.append(cos)
        sin_parts.append(sin)
    rest = head_dim - 3 * seg
    if rest:
        cos_parts.append(torch.ones(frame.shape[0], rest, device=frame.device))
        sin_parts.append(torch.zeros(frame.shape[0], rest, device=frame.device))
    return torch.cat(cos_parts, dim=-1), torch.cat(sin_parts, dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x [..., M, head_dim] by per-token cos/sin [M, head_dim].

    Channel pairs (2i, 2i+1) rotate together: (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin).
    """
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys (names match the release)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        past: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """Args:
            x: [B, M, C] tokens. cos, sin: [M, head_dim] rotary tables of these tokens.
            attn_mask: optional bool [M, L] (True = may attend).
            past: cached keys/values [B, heads, L0, head_dim] of earlier tokens, attended to
                in full by every token of ``x``.

        Returns:
            ([B, M, C] output, (keys, values) [B, heads, L0 + M, head_dim] incl. these tokens).
        """
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # [B, heads, M, head_dim] each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).flatten(2)), (k, v)


class MLP(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6)."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_hidden)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        past: KVCache | None = None,
    ) -> tuple[torch.Tensor, KVCache]:
        """x [B, M, C] -> ([B, M, C], the attention's keys/values); see ``Attention``."""
        attended, kv = self.attn(self.norm1(x), cos, sin, attn_mask, past)
        x = x + attended
        return x + self.mlp(self.norm2(x)), kv


def init_weights(module: nn.Module, blocks: nn.ModuleList, std: float = 0.02) -> None:
    """Release init: truncated normal std 0.02 for Linear/Conv weights, zero biases, unit
    LayerNorms; ``attn.proj`` and ``mlp.fc2`` of block i (1-based) divided by sqrt(2 i)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv3d):
            nn.init.trunc_normal_(sub.weight, std=std, a=-2.0, b=2.0)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
    with torch.no_grad():
        for layer_id, block in enumerate(blocks, start=1):
            block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
            block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))
