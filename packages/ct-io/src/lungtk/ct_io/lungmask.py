"""A classical lung-field mask: threshold, connected components, closing and hole filling.

Good enough to keep candidates inside the lungs: large air regions inside the body, not connected to the
air around the patient, with vessels, nodules and juxta-pleural nodules (up to about ``closing_mm``)
filled in. A nodule whose centre lies beyond the pleural line stays outside; test candidates against
the mask with a margin if those matter.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.ct_io.volume import CTVolume


def _close(mask: NDArray[np.bool_], radius_mm: float, spacing_irc: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Morphological closing by a Euclidean ball, as two exact distance transforms (fast for big balls)."""
    pad = np.ceil(radius_mm / spacing_irc).astype(int) + 1
    padded = np.pad(mask, [(p, p) for p in pad])
    dilated = ndimage.distance_transform_edt(~padded, sampling=spacing_irc) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=spacing_irc) > radius_mm
    return closed[tuple(slice(p, p + n) for p, n in zip(pad, mask.shape, strict=True))]


def lung_mask(
    ct: CTVolume,
    *,
    threshold_hu: float = -320.0,
    min_fraction: float = 0.1,
    min_volume_ml: float = 1.0,
    closing_mm: float = 10.0,
) -> NDArray[np.bool_]:
    """Boolean (index, row, col) mask of the lung fields of ``ct`` (HU)."""
    hu = np.asarray(ct.array)
    spacing = ct.geometry.spacing_irc
    air = hu < threshold_hu
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(hu.shape, bool)
    # Components touching the in-plane border are the air around the patient (or under the table).
    border = np.unique(
        np.concatenate(
            [labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() == 0:
        return np.zeros(hu.shape, bool)
    # The lungs, not stray gas: interior air of at least a tenth of the largest such component.
    keep = (sizes >= min_fraction * sizes.max()) & (
        sizes * ct.geometry.voxel_volume / 1000.0 >= min_volume_ml
    )
    mask = np.zeros(hu.shape, bool)
    # Each lung is closed on its own (so the two never bridge across the mediastinum) on a ~2 mm grid.
    step = np.maximum(1, np.floor(2.0 / spacing)).astype(int)
    objects = ndimage.find_objects(labels)
    for label in np.flatnonzero(keep):
        box = objects[label - 1]
        lung = labels[box] == label
        mask[box] |= lung
        if closing_mm > 0:
            coarse = _close(lung[:: step[0], :: step[1], :: step[2]], closing_mm, spacing * step)
            for axis, s in enumerate(step):
                coarse = np.repeat(coarse, s, axis=axis)
            closed = coarse[: lung.shape[0], : lung.shape[1], : lung.shape[2]]
            mask[box] |= closed & ~air[box]  # add tissue in the dents (vessels, nodules), not outside air
    for k in range(mask.shape[0]):
        mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask
