"""Nodule shapes on a phantom's voxel grid: real LIDC consensus masks resampled to the grid, or parametric
lobulated / spiculated shapes when the LIDC database is not installed.

A shape is a soft occupancy in [0, 1] (the partial volume of each voxel) on a small grid centred on the
nodule; its label is occupancy >= 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.fleischner import Texture, parse_texture
from lungtk.phantom.lidc import LidcNodule

Spacing = tuple[float, float, float]  # (z, y, x) mm


@dataclass(frozen=True)
class NoduleShape:
    occupancy: NDArray[np.float32]
    """Soft occupancy (index, row, col) on the phantom's spacing, the nodule centred."""
    texture: Texture
    texture_rating: float
    malignancy: float
    source: str

    @property
    def label(self) -> NDArray[np.bool_]:
        return self.occupancy >= 0.5


def resample_mask(mask: NDArray[np.bool_], src: Spacing, dst: Spacing) -> NDArray[np.float32]:
    """Linear resampling of a binary mask from spacing ``src`` to ``dst`` (both z, y, x mm), centred."""
    padded = np.pad(mask.astype(np.float32), 2)
    extent = np.asarray(padded.shape) * np.asarray(src)
    out_shape = np.maximum(np.ceil(extent / np.asarray(dst)).astype(int), 1)
    centre_in = (np.asarray(padded.shape) - 1) / 2
    centre_out = (out_shape - 1) / 2
    scale = np.asarray(dst) / np.asarray(src)
    grids = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in out_shape), indexing="ij", sparse=True)
    coords = [(g - centre_out[a]) * scale[a] + centre_in[a] for a, g in enumerate(grids)]
    coords = np.broadcast_arrays(*coords)
    return ndimage.map_coordinates(padded, coords, order=1, mode="constant").astype(np.float32)


def _crop_to_content(occupancy: NDArray[np.float32], margin: int = 1) -> NDArray[np.float32]:
    nonzero = np.argwhere(occupancy > 0.01)
    if not len(nonzero):
        return occupancy
    lo = np.maximum(nonzero.min(axis=0) - margin, 0)
    hi = nonzero.max(axis=0) + margin + 1
    # Keep the nodule centred: crop symmetrically about the grid's centre.
    centre = (np.asarray(occupancy.shape) - 1) / 2
    half = np.maximum(centre - lo, hi - 1 - centre)
    lo = np.maximum(np.floor(centre - half).astype(int), 0)
    hi = np.minimum(np.ceil(centre + half).astype(int) + 1, occupancy.shape)
    return occupancy[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]


def from_lidc(nodule: LidcNodule, spacing: Spacing, rng: np.random.Generator) -> NoduleShape:
    mask, src = nodule.consensus()
    # A random in-plane orientation (flips and quarter turns keep the square pixel grid).
    mask = np.rot90(mask, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        mask = mask[:, :, ::-1]
    occupancy = _crop_to_content(resample_mask(mask, src, spacing))
    return NoduleShape(
        occupancy, parse_texture(nodule.texture), nodule.texture, nodule.malignancy, nodule.key
    )


def _ball(
    grid: list[NDArray[np.float32]], centre: NDArray[np.float64], radius: float, voxel: float
) -> NDArray:
    d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    return np.clip((radius - d) / voxel + 0.5, 0.0, 1.0)


def _segment(grid: list[NDArray[np.float32]], a: NDArray, b: NDArray, radius: float, voxel: float) -> NDArray:
    ab = b - a
    t = sum((g - a[i]) * ab[i] for i, g in enumerate(grid)) / float(ab @ ab)
    t = np.clip(t, 0.0, 1.0)
    d = np.sqrt(sum((g - (a[i] + t * ab[i])) ** 2 for i, g in enumerate(grid)))
    return np.clip((radius - d) / voxel + 0.5, 0.0, 1.0)


def _random_direction(rng: np.random.Generator) -> NDArray[np.float64]:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def parametric(
    diameter_mm: float, spacing: Spacing, rng: np.random.Generator, *, texture: Texture | None = None
) -> NoduleShape:
    """A lobulated ball (a union of overlapping balls), spiculated for some larger nodules."""
    radius = diameter_mm / 2
    spiculated = diameter_mm >= 8 and rng.random() < 0.35
    reach = radius * (2.0 if spiculated else 1.3) + 2 * max(spacing)
    shape = [math.ceil(2 * reach / s) | 1 for s in spacing]
    grid = [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s).reshape([-1 if a == i else 1 for i in range(3)])
        for a, (n, s) in enumerate(zip(shape, spacing, strict=True))
    ]
    voxel = float(np.mean(spacing))
    occupancy = _ball(grid, np.zeros(3), 0.8 * radius, voxel)
    for _ in range(int(rng.integers(2, 6))):
        centre = _random_direction(rng) * rng.uniform(0.15, 0.35) * radius
        occupancy = np.maximum(occupancy, _ball(grid, centre, rng.uniform(0.5, 0.75) * radius, voxel))
    if spiculated:
        for _ in range(int(rng.integers(4, 10))):
            direction = _random_direction(rng)
            start, end = direction * 0.6 * radius, direction * radius * rng.uniform(1.3, 1.9)
            occupancy = np.maximum(occupancy, _segment(grid, start, end, rng.uniform(0.35, 0.6), voxel))
    if texture is None:
        texture = Texture(
            rng.choice([Texture.SOLID, Texture.PART_SOLID, Texture.GROUND_GLASS], p=[0.7, 0.15, 0.15])
        )
    rating = {Texture.GROUND_GLASS: 1.5, Texture.PART_SOLID: 3.0, Texture.SOLID: 4.8}[texture]
    # Malignancy grows with size and spiculation (a logistic trend, rated on LIDC's 1-5 scale).
    malignancy = float(
        np.clip(1 + 4 / (1 + math.exp(-(diameter_mm - 12) / 4)) + spiculated + rng.normal(0, 0.4), 1, 5)
    )
    return NoduleShape(
        _crop_to_content(occupancy.astype(np.float32)), texture, rating, malignancy, "parametric"
    )


def solid_core(occupancy: NDArray[np.float32], spacing: Spacing, fraction: float = 0.55) -> NDArray[np.bool_]:
    """A part-solid nodule's solid core: the voxels deeper than ``fraction`` of the deepest one."""
    label = occupancy >= 0.5
    depth = ndimage.distance_transform_edt(label, sampling=spacing)
    return depth >= fraction * depth.max() if depth.max() > 0 else label
