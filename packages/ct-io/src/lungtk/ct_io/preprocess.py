"""Intensity windows and resampling.

Window presets are the seeds' published choices:

- ``unit``: clip to [-1024, 400] HU and scale to [-1, 1] (seed 004, eq. 5; seed 000's residual U-Net);
- ``luna``: clip to [-1000, 1000] HU, values stay in HU (seed 001's LUNA16 pipeline);
- ``nodulenet``: clip to [-1200, 600] HU and scale to [0, 255] (NoduleNet, seed 003).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io.volume import CTVolume


@dataclass(frozen=True)
class Window:
    """Clip to [low, high] HU, then (optionally) map linearly onto [out_low, out_high]."""

    low: float
    high: float
    out_low: float | None = None
    out_high: float | None = None

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"window needs low < high, got [{self.low}, {self.high}]")
        if (self.out_low is None) != (self.out_high is None):
            raise ValueError("give both out_low and out_high, or neither")

    def __call__(self, array: ArrayLike) -> NDArray[np.float32]:
        out = np.clip(np.asarray(array, dtype=np.float32), self.low, self.high)
        if self.out_low is not None and self.out_high is not None:
            scale = (self.out_high - self.out_low) / (self.high - self.low)
            out -= self.low
            out *= scale
            out += self.out_low
        return out


PRESETS: dict[str, Window] = {
    "unit": Window(-1024.0, 400.0, -1.0, 1.0),
    "luna": Window(-1000.0, 1000.0),
    "nodulenet": Window(-1200.0, 600.0, 0.0, 255.0),
}


def get_window(name_or_window: str | Window) -> Window:
    """A :class:`Window`, a preset by name, or ``"LOW,HIGH"`` HU clipped and mapped onto [0, 1]."""
    if isinstance(name_or_window, Window):
        return name_or_window
    if "," in name_or_window:
        try:
            low, high = (float(v) for v in name_or_window.split(","))
            return Window(low, high, 0.0, 1.0)
        except ValueError:
            raise LungtkError(
                f"intensity window '{name_or_window}': write LOW,HIGH in HU with LOW < HIGH, e.g. -1000,400"
            ) from None
    try:
        return PRESETS[name_or_window]
    except KeyError:
        close = difflib.get_close_matches(name_or_window, PRESETS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise LungtkError(
            f"unknown intensity window '{name_or_window}'{hint} (presets: {', '.join(PRESETS)})"
        ) from None


def normalize(array: ArrayLike, window: str | Window = "unit") -> NDArray[np.float32]:
    """Apply a window preset (by name) or a :class:`Window` to HU values."""
    return get_window(window)(array)


def resampled_shape(
    shape: tuple[int, ...], spacing_irc: ArrayLike, new_spacing_irc: ArrayLike
) -> tuple[int, ...]:
    extent = np.asarray(shape) * np.asarray(spacing_irc, dtype=float)
    return tuple(int(n) for n in np.maximum(1, np.round(extent / np.asarray(new_spacing_irc, dtype=float))))


def resample(
    ct: CTVolume, spacing_xyz: ArrayLike, *, label: bool = False, fill: float | None = None
) -> CTVolume:
    """Resample to a new voxel spacing (x, y, z mm): linear for images, nearest for labels (``label``).

    The first voxel's centre stays where it was, so the geometry's origin does not move and every point
    keeps its patient-mm coordinates.
    """
    new_spacing = np.asarray(spacing_xyz, dtype=np.float64).reshape(-1)
    if new_spacing.shape != (3,) or np.any(new_spacing <= 0):
        raise LungtkError(f"resample needs 3 positive spacings (x, y, z mm), got {spacing_xyz!r}")
    from scipy import ndimage

    old_irc = ct.geometry.spacing_irc
    new_irc = new_spacing[::-1]
    shape = resampled_shape(ct.shape, old_irc, new_irc)
    scale = new_irc / old_irc
    source = np.asarray(ct.array)
    if fill is None:
        fill = 0.0 if label else float(source.min()) if source.size else 0.0
    dtype: Any = source.dtype if label else np.float32
    out = ndimage.affine_transform(
        source if label else source.astype(np.float32, copy=False),
        scale,
        output_shape=shape,
        order=0 if label else 1,
        mode="nearest" if not label else "constant",
        cval=fill,
        output=dtype,
    )
    geometry = Geometry(ct.geometry.origin, new_spacing, ct.geometry.direction)
    return ct.with_array(out, geometry)
