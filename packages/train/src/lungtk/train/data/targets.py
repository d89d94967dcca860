"""Segmentation targets where a data set has no masks: region growing from each annotation, as seed 001
builds its training masks (after *Deep Learning with PyTorch*'s ``buildAnnotationMask``).

From the annotation's centre voxel, a box grows along each axis (from a radius of 2 voxels) while the
voxels on both sides stay above the threshold (-700 HU), and never beyond the annotation's radius (its
diameter box; seed 001 has no such bound, and its boxes spill into vessels). The target is the box's voxels above the threshold that are connected to the centre. Pieces are
kept as (start voxel, boolean crop) and pasted into each patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from lungtk.ct_io.crops import crop_array

START_RADIUS = 2


@dataclass(frozen=True)
class Piece:
    """A boolean crop of a target and where its first voxel sits in the scan (index, row, col)."""

    start: tuple[int, int, int]
    mask: NDArray[np.bool_]


def grow_piece(
    hu: NDArray[np.generic],
    center_irc: ArrayLike,
    diameter_mm: float,
    spacing_irc: ArrayLike,
    threshold_hu: float = -700.0,
) -> Piece | None:
    """The region-grown target of one annotation, or None when its centre region is all below threshold."""
    shape = np.asarray(hu.shape)
    center = np.clip(np.floor(np.asarray(center_irc, dtype=float) + 0.5).astype(int), 0, shape - 1)
    spacing = np.asarray(spacing_irc, dtype=float)
    limit = np.maximum(1, np.floor(max(diameter_mm, 1.0) / 2 / spacing + 0.5).astype(int))
    radius = np.zeros(3, dtype=int)
    for axis in range(3):
        r = min(START_RADIUS, int(limit[axis]))
        step = np.zeros(3, dtype=int)
        step[axis] = 1
        while r < limit[axis]:
            lo, hi = center - r * step, center + r * step
            if lo[axis] < 0 or hi[axis] >= shape[axis]:
                break
            if not (hu[tuple(lo)] > threshold_hu and hu[tuple(hi)] > threshold_hu):
                break
            r += 1
        radius[axis] = r
    start = center - radius
    size = 2 * radius + 1
    box = crop_array(np.asarray(hu), start, size.tolist()) > threshold_hu
    labels, count = ndimage.label(box)
    if count == 0:
        return None
    local = tuple(radius)
    keep = labels[local]
    if keep == 0:  # the centre itself is below threshold: take the component nearest to it
        coords = np.argwhere(labels > 0)
        nearest = coords[np.argmin(np.abs(coords - radius).sum(axis=1))]
        keep = labels[tuple(nearest)]
    return Piece(tuple(int(v) for v in start), labels == keep)  # type: ignore[arg-type]


def paste_pieces(
    pieces: Sequence[Piece], start: ArrayLike, size: Sequence[int], out: NDArray[np.bool_] | None = None
) -> NDArray[np.bool_]:
    """The union of ``pieces`` inside the box ``[start, start + size)`` of the scan."""
    start = np.asarray(start, dtype=int)
    size_arr = np.asarray(size, dtype=int)
    if out is None:
        out = np.zeros(tuple(size_arr), dtype=bool)
    for piece in pieces:
        p0 = np.asarray(piece.start)
        lo = np.maximum(p0, start)
        hi = np.minimum(p0 + np.asarray(piece.mask.shape), start + size_arr)
        if np.any(hi <= lo):
            continue
        dst = tuple(slice(a, b) for a, b in zip(lo - start, hi - start, strict=True))
        src = tuple(slice(a, b) for a, b in zip(lo - p0, hi - p0, strict=True))
        out[dst] |= piece.mask[src]
    return out
