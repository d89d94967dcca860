"""Pictures of scans without a plotting library: windowed slices, mask outlines, PNG files."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import write_bytes

LUNG_WINDOW = (-1350.0, 150.0)  # level -600, width 1500
SOFT_TISSUE_WINDOW = (-160.0, 240.0)  # level 40, width 400


def window(hu: NDArray, bounds: tuple[float, float] = LUNG_WINDOW) -> NDArray[np.uint8]:
    """Map HU in [low, high] to 0..255."""
    low, high = bounds
    return (np.clip((np.asarray(hu, dtype=np.float32) - low) / (high - low), 0, 1) * 255 + 0.5).astype(
        np.uint8
    )


def outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The mask's boundary pixels (4-connected)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def overlay(
    gray: NDArray[np.uint8], mask: NDArray[np.bool_], color: tuple[int, int, int] = (255, 64, 64)
) -> NDArray[np.uint8]:
    """An RGB image: ``gray`` with the outline of ``mask`` drawn in ``color``."""
    rgb = (
        np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=-1) if gray.ndim == 2 else gray.copy()
    )
    rgb[outline(mask)] = color
    return rgb


def heat(values: NDArray, high: float) -> NDArray[np.uint8]:
    """An RGB heat map of ``values`` in [0, high]: black, red, yellow, white (readable in grey print)."""
    t = (
        np.clip(np.asarray(values, dtype=np.float32) / high, 0.0, 1.0)
        if high > 0
        else np.zeros(np.shape(values))
    )
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def upscale(image: NDArray[np.uint8], rows: float, cols: float) -> NDArray[np.uint8]:
    """Nearest-neighbour resize by factors (to show anisotropic voxels at their true aspect)."""
    r = np.minimum((np.arange(round(image.shape[0] * rows)) / rows).astype(int), image.shape[0] - 1)
    c = np.minimum((np.arange(round(image.shape[1] * cols)) / cols).astype(int), image.shape[1] - 1)
    return image[r][:, c]


def png_bytes(image: NDArray[np.uint8]) -> bytes:
    """Encode an 8-bit grayscale (H, W) or RGB (H, W, 3) image as PNG."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        color_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] == 3:
        color_type, channels = 2, 3
    else:
        raise ValueError(f"PNG needs a (H, W) or (H, W, 3) uint8 image, got shape {image.shape}")
    height, width = image.shape[:2]
    raw = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # filter byte 0 per row
    raw[:, 1:] = image.reshape(height, width * channels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], image: NDArray[np.uint8]) -> Path:
    return write_bytes(path, png_bytes(image))
