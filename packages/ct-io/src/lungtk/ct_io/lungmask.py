"""A classical lung-field mask: threshold, connected components, hole filling.

Good enough to keep candidates inside the lungs: air inside the body that is large and not connected to
the air around the patient, with vessels, nodules and juxta-pleural nodules filled in.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.ct_io.volume import CTVolume


def _ball(radius_vox: np.ndarray) -> NDArray[np.bool_]:
    r = np.maximum(np.round(radius_vox).astype(int), 0)
    grid = np.ogrid[tuple(slice(-n, n + 1) for n in r)]
    return sum((g / max(n, 1)) ** 2 for g, n in zip(grid, r, strict=True)) <= 1.0


def lung_mask(
    ct: CTVolume,
    *,
    threshold_hu: float = -320.0,
    min_fraction: float = 0.1,
    min_volume_ml: float = 1.0,
    closing_mm: float = 6.0,
) -> NDArray[np.bool_]:
    """Boolean (index, row, col) mask of the lung fields of ``ct`` (HU)."""
    hu = np.asarray(ct.array)
    air = hu < threshold_hu
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(hu.shape, bool)
    # Components that touch the in-plane border are the air around the patient (or the table).
    border = np.unique(
        np.concatenate(
            [
                labels[:, 0, :].ravel(),
                labels[:, -1, :].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() == 0:
        return np.zeros(hu.shape, bool)
    # Both lungs, not stray gas: interior air of at least a tenth of the largest such component.
    voxel_ml = ct.geometry.voxel_volume / 1000.0
    keep = (sizes >= min_fraction * sizes.max()) & (sizes * voxel_ml >= min_volume_ml)
    keep[int(np.argmax(sizes))] = True
    mask = keep[labels]
    # Close over vessels and pleural bumps, then fill what is enclosed slice by slice.
    radius = closing_mm / ct.geometry.spacing_irc
    structure = _ball(radius)
    pad = [(int(s // 2),) * 2 for s in structure.shape]
    mask = ndimage.binary_closing(np.pad(mask, pad), structure=structure)[
        tuple(slice(p[0], p[0] + n) for p, n in zip(pad, hu.shape, strict=True))
    ]
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask
