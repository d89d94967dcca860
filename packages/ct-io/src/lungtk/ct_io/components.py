"""Connected components of masks: the one a candidate's centre picks."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage


def component_at(mask: NDArray[np.bool_], centre_irc: ArrayLike) -> NDArray[np.bool_]:
    """The connected component (6-connected) holding the voxel nearest ``centre_irc`` (continuous voxel
    index, row, col), else the component nearest to that voxel; an empty mask stays empty."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.asarray(mask, dtype=bool)
    centre = nearest_voxel(centre_irc, mask.shape)
    keep = labels[centre]
    if keep == 0:
        _, nearest = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        keep = labels[tuple(nearest[(slice(None), *centre)])]
    return labels == keep


def nearest_voxel(irc: ArrayLike, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The voxel nearest a continuous (index, row, col), clipped to an array of ``shape``."""
    return tuple(
        int(v) for v in np.clip(np.round(np.asarray(irc, float)).astype(int), 0, np.asarray(shape) - 1)
    )
