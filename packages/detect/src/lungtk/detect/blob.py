"""A classical nodule detector: a multi-scale blob filter inside the lungs, vessels rejected by shape.

1. The lung fields (``lungtk.ct_io.lungmask``) bound the search; everything outside them is set to the
   lungs' median HU so the chest wall and mediastinum make no blobs, while nodules the mask's closing
   took in (juxta-pleural ones) stand out in full.
2. The scan is brought to a working grid of at least ``grid_mm`` per axis, and a scale-normalised
   Laplacian of Gaussian (as differences of Gaussians) is taken at diameters ``min..max_diameter_mm``.
   Local maxima of the response over space and scale are candidates, each with a diameter from its scale.
3. At each candidate the Hessian at its scale tells a blob (three large negative curvatures) from a
   vessel (one curvature near zero) or a fissure (two); the density of a shell around it tells an
   isolated nodule from a vessel branching point.
4. A logistic model of those features (``blob_calibration.json``, fitted on phantoms by
   ``scripts/calibrate_blob.py``) turns them into a probability.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import Candidate, LungtkError, RunOptions, Volume
from lungtk.core.labels import AIR_HU
from lungtk.core.validate import count, non_negative, positive
from lungtk.ct_io.lungmask import lung_mask

FEATURES = (
    "log_contrast",
    "flatness",
    "tubularity",
    "center_hu",
    "log_diameter",
    "lung_depth",
    "shell_dense",
)
SQRT3 = float(np.sqrt(3.0))


def load_calibration() -> dict[str, Any]:
    """The shipped logistic model: ``{"features": [...], "mean": [...], "scale": [...], "coef": [...],
    "intercept": b}`` (features standardised by mean and scale)."""
    text = resources.files("lungtk.detect").joinpath("blob_calibration.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class BlobPeaks:
    """Candidate blobs of one scan, before calibration: voxel centres on the scan's grid and features."""

    irc: NDArray[np.float64]  # (N, 3) on the scan's own voxel grid
    diameter_mm: NDArray[np.float64]
    features: NDArray[np.float64]  # (N, len(FEATURES))


def _working_grid(spacing_irc: NDArray[np.float64], grid_mm: float) -> NDArray[np.int64]:
    """Integer block sizes that bring each axis to at least ``grid_mm`` (never coarser than 2x that)."""
    return np.maximum(1, np.floor(grid_mm / spacing_irc + 1e-6)).astype(np.int64)


def _block_mean(array: NDArray[np.float32], block: NDArray[np.int64]) -> NDArray[np.float32]:
    if np.all(block == 1):
        return array
    shape = np.asarray(array.shape) // block
    trimmed = array[tuple(slice(0, int(n * b)) for n, b in zip(shape, block, strict=True))]
    view = trimmed.reshape(shape[0], block[0], shape[1], block[1], shape[2], block[2])
    return view.mean(axis=(1, 3, 5), dtype=np.float32)


def _hessian_eigenvalues(
    volume: NDArray[np.float32], center: NDArray[np.int64], sigma_mm: float, spacing: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Eigenvalues (ascending) of the scale-normalised Hessian (per mm, times sigma^2) at ``center``:
    the crop around it is smoothed at ``sigma_mm`` and differentiated by central differences."""
    sigma_vox = sigma_mm / spacing
    half = np.ceil(3 * sigma_vox).astype(int) + 2
    lo, hi = center - half, center + half + 1
    inside = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, volume.shape, strict=True))
    # Near the border, extend the patch by its edge values (not the whole volume: this runs per peak).
    patch = np.pad(
        volume[inside],
        [(max(-a, 0), max(b - n, 0)) for a, b, n in zip(lo, hi, volume.shape, strict=True)],
        mode="edge",
    )
    smooth = ndimage.gaussian_filter(patch.astype(np.float64), sigma_vox, mode="nearest")
    c = tuple(half)
    hessian = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            if i == j:
                up, down = list(c), list(c)
                up[i] += 1
                down[i] -= 1
                d = smooth[tuple(up)] - 2 * smooth[c] + smooth[tuple(down)]
            else:
                corners = []
                for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    q = list(c)
                    q[i] += si
                    q[j] += sj
                    corners.append(si * sj * smooth[tuple(q)])
                d = sum(corners) / 4.0
            hessian[i, j] = hessian[j, i] = d * sigma_mm**2 / (spacing[i] * spacing[j])
    return np.linalg.eigvalsh(hessian)


def _shell_dense(
    volume: NDArray[np.float32], center: NDArray[np.int64], radius_mm: float, spacing: NDArray[np.float64]
) -> float:
    """Fraction of the shell between 1.2 and 1.8 radii around ``center`` denser than -500 HU: near 0 for
    an isolated nodule, larger where vessels leave a branching point."""
    outer = 1.8 * radius_mm
    half = np.ceil(outer / spacing).astype(int)
    lo = np.maximum(center - half, 0)
    hi = np.minimum(center + half + 1, volume.shape)
    patch = volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, center, spacing, strict=True)]
    dist = np.sqrt(sum(g**2 for g in np.meshgrid(*axes, indexing="ij", sparse=True)))
    shell = (dist >= 1.2 * radius_mm) & (dist <= outer)
    return float((patch[shell] > -500.0).mean()) if shell.any() else 0.0


def _signed_depth(inside: NDArray[np.bool_], spacing: NDArray[np.float64]) -> NDArray[np.float32]:
    """Distance (mm) to the lung boundary: positive inside, negative outside."""
    depth = ndimage.distance_transform_edt(inside, sampling=spacing).astype(np.float32)
    depth -= ndimage.distance_transform_edt(~inside, sampling=spacing).astype(np.float32)
    return depth


@dataclass
class BlobDetector:
    """Multi-scale blob detector for lung nodules (see the module docstring)."""

    min_diameter_mm: float = 3.5
    max_diameter_mm: float = 32.0
    scales: int = 7
    grid_mm: float = 1.0
    lung_margin_mm: float = 4.0
    rim_mm: float = 1.0
    min_contrast_hu: float = 40.0
    max_candidates: int = 100
    max_peaks: int = 800
    calibration: dict[str, Any] = field(default_factory=load_calibration)

    def __post_init__(self) -> None:
        """Settings checked where they enter (``--set blob.KEY=VALUE`` or a caller's arguments)."""
        for key in ("min_diameter_mm", "max_diameter_mm", "grid_mm"):
            positive(getattr(self, key), f"setting blob.{key}")
        for key in ("lung_margin_mm", "rim_mm", "min_contrast_hu"):
            non_negative(getattr(self, key), f"setting blob.{key}")
        for key in ("scales", "max_candidates", "max_peaks"):
            count(getattr(self, key), f"setting blob.{key}")
        if self.min_diameter_mm > self.max_diameter_mm:
            raise LungtkError(
                f"setting blob.min_diameter_mm={self.min_diameter_mm:g} is above max_diameter_mm="
                f"{self.max_diameter_mm:g}; make the minimum the smaller"
            )

    @classmethod
    def from_options(cls, options: RunOptions) -> BlobDetector:
        """The component factory: the declared settings (see the package's plugin module) as fields."""
        return cls(**options.settings)

    @property
    def diameters_mm(self) -> NDArray[np.float64]:
        return np.geomspace(self.min_diameter_mm, self.max_diameter_mm, self.scales)

    def peaks(self, ct: Volume, lungs: NDArray[np.bool_] | None = None) -> BlobPeaks:
        """Blob candidates of ``ct`` with their features (``lungs``: a precomputed lung mask)."""
        geometry = ct.geometry
        spacing = geometry.spacing_irc
        if lungs is None:
            lungs = lung_mask(ct)  # type: ignore[arg-type]
        empty = BlobPeaks(np.zeros((0, 3)), np.zeros(0), np.zeros((0, len(FEATURES))))
        if not lungs.any():
            return empty
        # Search box: the lungs plus a margin (and room for the largest filter).
        idx = np.argwhere(lungs)
        pad = np.ceil((self.lung_margin_mm + self.max_diameter_mm) / spacing).astype(int)
        lo = np.maximum(idx.min(axis=0) - pad, 0)
        hi = np.minimum(idx.max(axis=0) + pad + 1, lungs.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        del idx
        hu = np.asarray(ct.array[box])
        inside = lungs[box]
        background = float(np.median(hu[inside][:: max(1, int(inside.sum()) // 200_000)]))
        volume = np.where(inside, np.clip(hu, AIR_HU, 100.0).astype(np.float32), np.float32(background))
        block = _working_grid(spacing, self.grid_mm)
        work = _block_mean(volume, block)
        work_spacing = spacing * block
        # The pleura's partial-volume rim (inside the mask, brighter than lung) would read as curved sheets.
        inside_work = _block_mean(inside.astype(np.float32), block) >= 0.5
        rim = inside_work & ~ndimage.binary_erosion(inside_work, iterations=max(1, round(self.rim_mm)))
        work[rim] = background
        del rim
        depth_block = np.maximum(1, np.round(2.0 / work_spacing)).astype(np.int64)
        depth = _signed_depth(
            _block_mean(inside_work.astype(np.float32), depth_block) >= 0.5, work_spacing * depth_block
        )
        del inside_work
        # Scale space: s^2 * LoG as differences of Gaussians at sigma_k / sqrt(r) and sigma_k * sqrt(r), which
        # is sigma_{k+1} / sqrt(r): each blur serves two scales. A ball's response peaks near its contrast.
        diameters = self.diameters_mm
        ratio = float(diameters[1] / diameters[0]) if len(diameters) > 1 else 1.5
        sigmas = np.append(diameters, diameters[-1] * ratio) / (2.0 * SQRT3) / np.sqrt(ratio)
        best = np.full(work.shape, -np.inf, dtype=np.float32)
        best_scale = np.zeros(work.shape, dtype=np.uint8)
        inner = ndimage.gaussian_filter(work, sigmas[0] / work_spacing, mode="nearest")
        for k in range(len(diameters)):
            outer = ndimage.gaussian_filter(work, sigmas[k + 1] / work_spacing, mode="nearest")
            response = inner
            response -= outer
            better = response > best
            best[better] = response[better]
            best_scale[better] = k
            del response, better
            inner = outer
        del inner
        footprint = np.maximum(3, np.round(self.min_diameter_mm / work_spacing).astype(int) | 1)
        is_peak = best == ndimage.maximum_filter(best, size=tuple(footprint), mode="nearest")
        is_peak &= best >= self.min_contrast_hu * 0.25
        peaks = np.argwhere(is_peak)
        del is_peak
        peak_depth = depth[tuple(np.minimum(peaks // depth_block, np.asarray(depth.shape) - 1).T)]
        peaks, peak_depth = (
            peaks[peak_depth >= -self.lung_margin_mm],
            peak_depth[peak_depth >= -self.lung_margin_mm],
        )
        if len(peaks) == 0:
            return empty
        strength = best[tuple(peaks.T)]
        order = np.argsort(strength)[::-1][: self.max_peaks]
        peaks, strength, peak_depth = peaks[order], strength[order], peak_depth[order]
        scale_index = best_scale[tuple(peaks.T)]
        diameter = diameters[scale_index]
        smooth_small = ndimage.gaussian_filter(work, 1.0 / work_spacing, mode="nearest")

        features = np.zeros((len(peaks), len(FEATURES)))
        for n, (p, d) in enumerate(zip(peaks, diameter, strict=True)):
            eig = _hessian_eigenvalues(work, p, d / (2.0 * SQRT3), work_spacing)
            # A bright blob: three negative eigenvalues of similar size. Sorted ascending, eig[0] is the
            # strongest curvature; a vessel has eig[2] ~ 0, a sheet has eig[1] ~ 0 too.
            strongest = min(eig[0], -1e-6)
            features[n] = (
                np.log(max(float(strength[n]), 1.0)),
                np.clip(eig[1] / strongest, -1, 1),
                np.clip(eig[2] / strongest, -1, 1),
                float(smooth_small[tuple(p)]),
                np.log(d),
                float(peak_depth[n]),
                _shell_dense(work, p, d / 2.0, work_spacing),
            )
        # Working-grid voxel p covers scan voxels [p*block, (p+1)*block): its centre, back in the scan.
        irc = lo + peaks * block + (block - 1) / 2.0
        return BlobPeaks(irc.astype(np.float64), diameter.astype(np.float64), features)

    def probability(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated probability that a candidate with these features is a nodule."""
        cal = self.calibration
        if list(cal["features"]) != list(FEATURES):
            raise ValueError(f"calibration features {cal['features']} do not match {list(FEATURES)}")
        z = (features - np.asarray(cal["mean"])) / np.asarray(cal["scale"])
        logit = z @ np.asarray(cal["coef"]) + float(cal["intercept"])
        return 1.0 / (1.0 + np.exp(-logit))

    def detect(self, ct: Volume, lungs: NDArray[np.bool_] | None = None) -> list[Candidate]:
        found = self.peaks(ct, lungs)
        if len(found.irc) == 0:
            return []
        prob = self.probability(found.features)
        order = np.argsort(prob)[::-1][: self.max_candidates]
        xyz = ct.geometry.irc2xyz(found.irc[order])
        return [
            Candidate(tuple(c), float(d), float(p), source="blob")
            for c, d, p in zip(xyz, found.diameter_mm[order], prob[order], strict=True)
        ]
