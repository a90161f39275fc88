"""Camera frames of external datasets as uint8 RGB arrays: video files decoded with PyAV (``av``)
and encoded images, centre-cropped and resized to a square like ``preprocess_images`` crops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from world_model.data.format import DatasetError


def optional_import(name: str):
    """Import an optional dependency, naming the package to install when it is missing."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        package = {"pyarrow.parquet": "pyarrow", "av": "av"}[name]
        raise ModuleNotFoundError(
            f"reading LeRobot datasets needs the '{package}' package: pip install {package}"
        ) from None


def square_resize(image: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 [H, W, 3] -> centre square crop resized to [size, size, 3] (bilinear, antialiased),
    the crop ``preprocess_images`` makes; None keeps the image as it is."""
    if size is None:
        return image
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    pixels = torch.from_numpy(np.ascontiguousarray(square)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def decode_video(
    path: Path, fps: float, image_size: int | None, start: float = 0.0, stop: float = math.inf
) -> np.ndarray:
    """uint8 [F, H, W, 3]: the frames of video ``path`` whose timestamps fall in [start, stop)
    seconds (half a frame period of slack at both ends), resized by ``square_resize``."""
    av = optional_import("av")
    slack = 0.5 / fps
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:  # to the key frame before start
                container.seek(int(start / stream.time_base), stream=stream)
            for frame in container.decode(stream):
                time = float(frame.pts * stream.time_base) if frame.pts is not None else None
                if time is not None and time < start - slack:
                    continue
                if time is not None and time >= stop - slack:
                    break
                frames.append(square_resize(frame.to_ndarray(format="rgb24"), image_size))
    except (av.error.FFmpegError, IndexError) as error:
        raise DatasetError(f"{path}: unreadable video ({type(error).__name__}: {error})") from None
    if not frames:
        raise DatasetError(f"{path}: no frames in [{start}, {stop})")
    return np.stack(frames)


def decode_images(column: list[Any], image_size: int | None) -> np.ndarray:
    """Frames of an ``image`` feature (parquet structs with encoded ``bytes``) -> uint8."""
    import imageio.v3 as iio

    frames = []
    for value in column:
        data = value.get("bytes") if isinstance(value, dict) else None
        if not data:
            raise DatasetError("an image feature row holds no encoded bytes")
        try:
            image = iio.imread(data)
        except (OSError, ValueError) as error:
            raise DatasetError(f"an image feature row is not a readable image ({error})") from None
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        frames.append(square_resize(np.ascontiguousarray(image[..., :3]), image_size))
    return np.stack(frames)
