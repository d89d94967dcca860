"""Crops at a patient-mm or voxel centre, padded where they leave the volume, with their own geometry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core.labels import PAD_HU
from lungtk.ct_io.volume import CTVolume


def crop_bounds(center_irc: ArrayLike, size: Sequence[int]) -> NDArray[np.int64]:
    """Start voxel of a ``size`` box centred on ``center_irc`` (the centre voxel is ``start + size // 2``)."""
    center = np.floor(np.asarray(center_irc, dtype=np.float64) + 0.5).astype(np.int64)
    return center - np.asarray(size, dtype=np.int64) // 2


def crop_array(
    array: NDArray[Any], start: ArrayLike, size: Sequence[int], pad_value: float = PAD_HU
) -> NDArray[Any]:
    """Copy ``array[start:start+size]``, padding with ``pad_value`` outside the array (by default what a
    scan stores outside its field of view, ``lungtk.core.labels.PAD_HU``)."""
    start = np.asarray(start, dtype=np.int64)
    size_arr = np.asarray(size, dtype=np.int64)
    if size_arr.shape != (array.ndim,) or np.any(size_arr < 1):
        raise ValueError(f"crop size must be {array.ndim} positive integers, got {tuple(size)}")
    stop = start + size_arr
    shape = np.asarray(array.shape)
    src_lo, src_hi = np.maximum(start, 0), np.minimum(stop, shape)
    if np.all(start >= 0) and np.all(stop <= shape):
        return np.array(array[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))])
    out = np.full(tuple(size_arr), pad_value, dtype=array.dtype)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - start
        dst = tuple(slice(a, a + (h - lo)) for a, lo, h in zip(dst_lo, src_lo, src_hi, strict=True))
        out[dst] = array[tuple(slice(a, b) for a, b in zip(src_lo, src_hi, strict=True))]
    return out


def crop(
    ct: CTVolume,
    *,
    size: Sequence[int],
    center_xyz: ArrayLike | None = None,
    center_irc: ArrayLike | None = None,
    pad_value: float = PAD_HU,
) -> CTVolume:
    """A ``size`` (index, row, col) crop centred on a patient-mm or voxel centre, as a CTVolume whose
    geometry places every voxel where it was."""
    if (center_xyz is None) == (center_irc is None):
        raise ValueError("give exactly one of center_xyz or center_irc")
    if center_irc is None:
        center_irc = ct.geometry.xyz2irc(center_xyz, continuous=True)
    start = crop_bounds(center_irc, size)
    array = crop_array(ct.array, start, size, pad_value)
    return ct.with_array(array, ct.geometry.shifted(start))


def paste(target: NDArray[Any], patch: NDArray[Any], start: ArrayLike, *, op: str = "max") -> None:
    """Write ``patch`` into ``target`` at ``start`` (clipped to the target), by ``max`` or ``set``."""
    start = np.asarray(start, dtype=np.int64)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + np.asarray(patch.shape), np.asarray(target.shape))
    if np.any(hi <= lo):
        return
    t = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    p = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start, strict=True))
    if op == "max":
        np.maximum(target[t], patch[p], out=target[t])
    elif op == "set":
        target[t] = patch[p]
    else:
        raise ValueError(f"unknown paste op {op!r}; use 'max' or 'set'")
