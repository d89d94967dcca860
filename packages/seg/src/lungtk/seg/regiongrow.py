"""A classical nodule segmenter: region growing from the candidate's centre (after seed 001's masks).

Seed 001 builds its training masks by walking out from a nodule's centre until the HU falls under a
threshold, within a box. Here the same idea is a 3D region grow:

1. a crop around the candidate, lightly smoothed; the seed is the densest voxel near the centre;
2. a region grows from the seed over voxels ``min_contrast_hu`` above the lung around the candidate,
   within ``radius_factor`` times the candidate's radius; an opening by a ball of ``opening_fraction``
   of that radius (1-3 mm) cuts the vessels that touch it, and holes are filled;
3. the nodule's plateau density (a low quantile of that region's interior, so that the ground glass
   of a part-solid nodule counts) sets the final threshold ``fraction`` of the way from lung to nodule,
   where a blurred edge lies, and the region grows again. A candidate no denser than the lung around it
   gets an empty mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import Candidate, NoduleMask, RunOptions, Volume
from lungtk.core.labels import AIR_HU
from lungtk.ct_io.crops import crop_array, crop_bounds


def _ball(radius_mm: float, spacing: NDArray[np.float64]) -> NDArray[np.bool_]:
    half = np.floor(radius_mm / spacing).astype(int)
    grids = np.meshgrid(
        *[np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)], indexing="ij"
    )
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def _largest_touching(mask: NDArray[np.bool_], seed: tuple[int, ...]) -> NDArray[np.bool_]:
    """The connected component of ``mask`` holding ``seed`` (else the largest one)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    keep = labels[seed]
    if keep == 0:
        keep = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    return labels == keep


@dataclass
class RegionGrowSegmenter:
    """Region growing from each candidate's centre with an adaptive HU threshold and a radius limit."""

    fraction: float = 0.5
    plateau_quantile: float = 0.25
    min_contrast_hu: float = 100.0
    radius_factor: float = 1.6
    min_radius_mm: float = 4.0
    max_radius_mm: float = 25.0
    seed_radius_mm: float = 2.0
    opening_fraction: float = 0.35
    min_opening_mm: float = 1.0
    max_opening_mm: float = 3.0

    @classmethod
    def from_options(cls, options: RunOptions) -> RegionGrowSegmenter:
        """The component factory: the declared settings (see the package's plugin module) as fields."""
        return cls(**options.settings)

    def segment_one(self, ct: Volume, candidate: Candidate) -> NoduleMask:
        geometry = ct.geometry
        spacing = geometry.spacing_irc
        limit = float(
            np.clip(self.radius_factor * candidate.diameter_mm / 2, self.min_radius_mm, self.max_radius_mm)
        )
        center = geometry.xyz2irc(candidate.center_xyz, continuous=True)
        size = 2 * np.ceil((limit + 2 * max(spacing)) / spacing).astype(int) + 1
        start = crop_bounds(center, size)
        crop_geometry = geometry.shifted(start)
        hu = crop_array(np.asarray(ct.array), start, size, AIR_HU).astype(np.float32)
        smooth = ndimage.gaussian_filter(hu, 0.6 * min(spacing) / spacing, mode="nearest")

        offsets = [(np.arange(n) - c) * s for n, c, s in zip(size, center - start, spacing, strict=True)]
        dist = np.sqrt(sum(g**2 for g in np.meshgrid(*offsets, indexing="ij", sparse=True)))
        near = dist <= max(self.seed_radius_mm, 0.25 * candidate.diameter_mm)
        seed = np.unravel_index(int(np.argmax(np.where(near, smooth, -np.inf))), smooth.shape)
        core = float(smooth[seed])
        shell = (dist > limit) & (dist <= limit + 2 * max(spacing))
        lung = smooth[shell & (smooth < -500)]
        background = float(np.median(lung)) if lung.size else -850.0
        empty = NoduleMask(np.zeros(hu.shape, bool), crop_geometry)
        if core - background < self.min_contrast_hu:
            return empty
        # A first, low threshold takes the whole nodule (ground glass too); the density of its plateau (a
        # low quantile of its interior, so a part-solid nodule's ground glass counts) then sets the
        # threshold half-way between lung and nodule, where the blurred edge of the nodule lies.
        ball = _ball(
            float(
                np.clip(
                    self.opening_fraction * candidate.diameter_mm / 2,
                    self.min_opening_mm,
                    self.max_opening_mm,
                )
            ),
            spacing,
        )
        rough = self._grow(smooth, background + self.min_contrast_hu, dist <= limit, seed, ball)
        if rough is None:
            return empty
        interior = ndimage.binary_erosion(rough)
        plateau = float(np.quantile(smooth[interior if interior.any() else rough], self.plateau_quantile))
        threshold = max(
            background + self.fraction * (plateau - background), background + self.min_contrast_hu
        )
        region = self._grow(smooth, threshold, dist <= limit, seed, ball)
        return NoduleMask(rough if region is None else region, crop_geometry)

    def _grow(
        self,
        smooth: NDArray[np.float32],
        threshold: float,
        allowed: NDArray[np.bool_],
        seed: tuple[int, ...],
        ball: NDArray[np.bool_],
    ) -> NDArray[np.bool_] | None:
        """The opened, hole-filled connected region above ``threshold`` holding ``seed``."""
        region = (smooth >= threshold) & allowed
        if not region[seed]:
            return None
        region = _largest_touching(region, seed)
        if ball.sum() > 1:
            opened = ndimage.binary_opening(region, structure=ball)
            if opened[seed]:  # a nodule thinner than the ball keeps its unopened region
                region = _largest_touching(opened, seed)
        return ndimage.binary_fill_holes(region)

    def segment(self, ct: Volume, candidates: Sequence[Candidate]) -> list[NoduleMask]:
        return [self.segment_one(ct, c) for c in candidates]
