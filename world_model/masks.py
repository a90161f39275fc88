"""Space-time block masks for V-JEPA encoder training: a mask is a union of spatial rectangles
extended over all tubelet steps; the complement is the context the encoder sees."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class MaskSpec:
    """One family of masks (V-JEPA: short range 8 x 0.15, long range 2 x 0.7 of the image).

    Attributes:
        num_blocks: rectangles per mask (their union is masked).
        scale: area of each rectangle as a fraction of the frame.
        aspect_ratio: (min, max) height / width, sampled log-uniformly.
    """

    num_blocks: int = 8
    scale: float = 0.15
    aspect_ratio: tuple[float, float] = (0.75, 1.5)


def _block(spec: MaskSpec, height: int, width: int, generator: torch.Generator):
    """(top, left, h, w) of one random rectangle."""
    low, high = math.log(spec.aspect_ratio[0]), math.log(spec.aspect_ratio[1])
    uniform = torch.rand(3, generator=generator).tolist()
    ratio = math.exp(low + (high - low) * uniform[0])
    area = spec.scale * height * width
    h = min(height, max(1, round(math.sqrt(area * ratio))))
    w = min(width, max(1, round(math.sqrt(area / ratio))))
    top = int(uniform[1] * (height - h + 1))
    left = int(uniform[2] * (width - w + 1))
    return top, left, h, w


def sample_mask(
    spec: MaskSpec, grid: tuple[int, int, int], generator: torch.Generator, tries: int = 20
) -> torch.Tensor:
    """A bool mask [T' * H' * W'] (True = masked, token order time, row, col) that leaves at
    least one token visible (re-drawn up to ``tries`` times, then one token is un-masked).

    Args:
        grid: (T', H', W') tokens along time (tubelets), rows and columns.
    """
    grid_t, height, width = grid
    for _ in range(tries):
        spatial = torch.zeros(height, width, dtype=torch.bool)
        for _ in range(spec.num_blocks):
            top, left, h, w = _block(spec, height, width, generator)
            spatial[top : top + h, left : left + w] = True
        if not spatial.all():
            break
    else:
        cell = int(torch.randint(height * width, (1,), generator=generator))
        spatial.view(-1)[cell] = False
    return spatial.expand(grid_t, height, width).reshape(-1)


def _pick(candidates: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random entries of the index vector ``candidates``, sorted."""
    chosen = torch.randperm(len(candidates), generator=generator)[:count]
    return candidates[chosen].sort().values


def sample_mask_indices(
    spec: MaskSpec, batch: int, grid: tuple[int, int, int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One mask per sample, trimmed to equal counts across the batch (as V-JEPA's collator).

    Returns:
        (context [B, Kc], target [B, Kt]) int64 token indices; each sample keeps a random
        ``Kc`` of its visible tokens and ``Kt`` of its masked ones (the batch minima).
    """
    masks = [sample_mask(spec, grid, generator) for _ in range(batch)]
    keep = min(int((~mask).sum()) for mask in masks)
    hide = min(int(mask.sum()) for mask in masks)
    context = torch.stack([_pick(torch.nonzero(~m)[:, 0], keep, generator) for m in masks])
    target = torch.stack([_pick(torch.nonzero(m)[:, 0], hide, generator) for m in masks])
    return context, target
