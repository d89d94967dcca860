"""Where the windows of a sliding-window pass go, and how one window is read out of the image.

Along each spatial axis the windows start every ``window * (1 - overlap)`` voxels (at least 1) and the
last one is aligned to the end of the axis, so the windows cover the axis without running past it. An
axis shorter than the window is padded, centred, to the window's size; a window is read out of the
caller's array or tensor as it is (a memory map stays a memory map) and only that window is copied.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``size`` voxels (``size >= window``)."""
    if size <= window:
        return [0]
    step = max(1, int(window * (1 - overlap) + 1e-9))
    return [*range(0, size - window, step), size - window]


def window_grid(
    padded: Sequence[int], window: Sequence[int], overlap: Sequence[float]
) -> list[tuple[int, ...]]:
    """Start corners of all windows over a (padded) volume, in C order."""
    return list(itertools.product(*map(window_starts, padded, window, overlap)))


def padding(spatial: Sequence[int], window: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(padded shape, padding before) that centres axes shorter than the window in it."""
    padded = tuple(max(s, w) for s, w in zip(spatial, window, strict=True))
    before = tuple((p - s) // 2 for p, s in zip(padded, spatial, strict=True))
    return padded, before


def read_window(
    image: np.ndarray | torch.Tensor,
    start: Sequence[int],
    window: Sequence[int],
    before: Sequence[int],
    pad_value: float,
) -> torch.Tensor:
    """The float32 window (C, *window) at ``start`` in padded coordinates; pad_value outside the image."""
    src, dst = [], []
    for a, w, b, s in zip(start, window, before, image.shape[1:], strict=True):
        lo = a - b
        src_lo, src_hi = max(lo, 0), min(lo + w, s)
        src.append(slice(src_lo, src_hi))
        dst.append(slice(src_lo - lo, src_hi - lo))
    part = _as_float32(image[(slice(None), *src)])
    if tuple(part.shape[1:]) == tuple(window):
        return part
    out = torch.full((image.shape[0], *window), float(pad_value), dtype=torch.float32, device=part.device)
    out[(slice(None), *dst)] = part
    return out


def _as_float32(part: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(part, torch.Tensor):
        return part.to(torch.float32)
    return torch.from_numpy(np.array(part, dtype=np.float32))
