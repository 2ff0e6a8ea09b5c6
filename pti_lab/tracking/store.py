"""The local results store: images, JSON and JSON-lines in the run directory, written atomically."""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pti_lab.atomic import atomic_path, write_text


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] images [N, C, H, W] -> uint8 [N, H, W, C] (grey images keep one channel)."""
    assert images.ndim == 4, f"expected [N, C, H, W], got {list(images.shape)}"  # [NCHW]
    pixels = ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, columns: int = 8) -> np.ndarray:
    """Tile [-1, 1] images [N, C, H, W] into one uint8 image, `columns` per row."""
    tiles = to_uint8(images)
    n, h, w, c = tiles.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    grid = np.zeros([rows * h, columns * w, c], dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, k = divmod(i, columns)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = tile
    return grid


def save_png(pixels: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 [H, W, C] array as PNG atomically."""
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
