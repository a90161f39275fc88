"""The video ViT encoder (Conv3d tubelet patches, 3-D RoPE) and the one place where camera
images become model input: uint8 RGB HWC -> (multi-view images: one square per view) -> centre
square crop -> bilinear resize -> ImageNet normalisation -> a tubelet of two copies of each
frame."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from world_model.config import WorldModelConfig, mlp_hidden_dim
from world_model.errors import ImageError
from world_model.layers import Block, rope_table

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LATENT_NORM_EPS = 1e-5  # the parameter-free layer norm applied to every latent


def as_image_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Check and batch camera images.

    Args:
        images: uint8 RGB, [H, W, 3] or [B, H, W, 3], numpy or torch.

    Returns:
        uint8 tensor [B, H, W, 3] (shares memory with the input where possible: a numpy
        array is copied only when it is not C-contiguous or not writable).
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise ImageError(f"images must be uint8 RGB (0..255), got numpy dtype {images.dtype}")
        images = np.ascontiguousarray(images)
        if not images.flags.writeable:  # torch would warn; nothing here writes to it anyway
            images = images.copy()  # (read-only: ROS messages, np.frombuffer, memory maps)
        images = torch.from_numpy(images)
    elif not isinstance(images, torch.Tensor):
        raise ImageError(f"images must be a numpy array or torch tensor, got {type(images)}")
    if images.dtype != torch.uint8:
        raise ImageError(f"images must be uint8 RGB (0..255), got dtype {images.dtype}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ImageError(
            f"images must have shape [H, W, 3] or [B, H, W, 3] (RGB, channels last), "
            f"got {tuple(images.shape)}"
        )
    if images.shape[0] == 0 or images.shape[1] < 2 or images.shape[2] < 2:
        raise ImageError(f"images must be non-empty and at least 2x2, got {tuple(images.shape)}")
    return images


def split_views(batch: torch.Tensor, views: int) -> torch.Tensor:
    """Images of ``views`` square views side by side, uint8 [B, H, views x H, 3] ->
    [B x views, H, H, 3] (image-major: image 0's views first).

    Raises:
        ImageError: the width is not ``views`` x the height.
    """
    if views == 1:
        return batch
    height, width = batch.shape[1:3]
    if width != views * height:
        raise ImageError(
            f"this world model takes {views} camera views side by side (an image {views} x as "
            f"wide as high, e.g. sim.make(..., cameras='exterior,wrist')), got "
            f"{height}x{width}"
        )
    return batch.unflatten(2, (views, height)).transpose(1, 2).flatten(0, 1)


def preprocess_images(
    images: np.ndarray | torch.Tensor,
    img_size: int,
    device: torch.device | str = "cpu",
    views: int = 1,
) -> torch.Tensor:
    """uint8 RGB images -> normalised float32 [B x views, 3, img_size, img_size] on ``device``.

    Splits multi-view images into their views (:func:`split_views`), centre-crops each to a
    square, resizes bilinearly (align_corners False, no antialias, as the release's video
    transforms do) when the size differs, then applies ImageNet mean/std.
    """
    batch = split_views(as_image_batch(images).to(device), views)
    height, width = batch.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    pixels = batch[:, top : top + side, left : left + side].permute(0, 3, 1, 2)
    pixels = pixels.to(torch.float32) / 255.0
    if side != img_size:
        pixels = F.interpolate(
            pixels, size=(img_size, img_size), mode="bilinear", align_corners=False
        )
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def layer_norm_latents(latents: torch.Tensor) -> torch.Tensor:
    """Parameter-free layer norm over the feature dim (eps 1e-5): [..., D] -> [..., D]."""
    return F.layer_norm(latents, (latents.shape[-1],), eps=LATENT_NORM_EPS)


class PatchEmbed3D(nn.Module):
    """Tubelet patches: Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        size = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(3, config.encoder.embed_dim, kernel_size=size, stride=size)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip [B, 3, T, H, W] -> tokens [B, T/tubelet * H/p * W/p, D] (time, row, col)."""
        return self.proj(clip).flatten(2).transpose(1, 2)


class VideoEncoder(nn.Module):
    """Video ViT with 3-D RoPE and a final LayerNorm; parameter names match the release."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        enc = config.encoder
        self.config = config
        self.head_dim = enc.embed_dim // enc.num_heads
        self.patch_embed = PatchEmbed3D(config)
        hidden = mlp_hidden_dim(enc.embed_dim, enc.mlp_ratio)
        self.blocks = nn.ModuleList(
            Block(enc.embed_dim, enc.num_heads, hidden) for _ in range(enc.depth)
        )
        self.norm = nn.LayerNorm(enc.embed_dim, eps=1e-6)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """Encode normalised video.

        Args:
            clip: [B, 3, T, H, W] float, T a multiple of the tubelet size.

        Returns:
            [B, T/tubelet * (H/p) * (W/p), D] raw encoder output (final LayerNorm applied).
        """
        _, _, frames, height, width = clip.shape
        patch, tubelet = self.config.patch_size, self.config.tubelet_size
        grid_t, grid_h, grid_w = frames // tubelet, height // patch, width // patch
        ids = torch.arange(grid_t * grid_h * grid_w, device=clip.device)
        frame, row, col = ids // (grid_h * grid_w), (ids // grid_w) % grid_h, ids % grid_w
        cos, sin = rope_table(frame, row, col, self.head_dim)
        tokens = self.patch_embed(clip)
        for block in self.blocks:
            tokens, _ = block(tokens, cos, sin)
        return self.norm(tokens)

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode single frames, each as a tubelet of copies of itself.

        Args:
            pixels: [B x views, 3, H, W] normalised frames (``preprocess_images``' output).

        Returns:
            [B, N, D] raw encoder output, N = views x grid^2 (each image's views in a row).
        """
        clip = pixels.unsqueeze(2).expand(-1, -1, self.config.tubelet_size, -1, -1)
        tokens = self.forward(clip)
        return tokens.unflatten(0, (-1, self.config.views)).flatten(1, 2)
