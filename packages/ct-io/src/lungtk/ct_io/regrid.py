"""Sample a volume on another voxel grid, wherever the two grids sit in patient space.

Learned components see the scan at their own spacing: a cube around a candidate at, say, 1 mm, whatever
the scan's spacing and direction; their outputs go back onto the scan's grid the same way. Both
directions are :func:`resample_onto`: for every voxel of the target grid, its patient-mm position is
looked up in the source grid and interpolated there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core import Geometry


def resample_onto(
    array: NDArray[Any],
    geometry: Geometry,
    target: Geometry,
    shape: Sequence[int],
    *,
    order: int = 1,
    fill: float = 0.0,
) -> NDArray[np.float32]:
    """``array`` (on ``geometry``) sampled at every voxel of the ``shape`` grid placed by ``target``.

    ``order`` 1 is trilinear, 0 nearest; points outside the source get ``fill``.
    """
    from scipy import ndimage

    shape = tuple(int(s) for s in shape)
    irc = np.indices(shape, dtype=np.float64).reshape(3, -1).T
    source_irc = geometry.xyz2irc(target.irc2xyz(irc), continuous=True)
    # only the block of source voxels the samples can touch is read (and made float): a cube of a scan
    # costs the cube, not the scan. One voxel of margin keeps every interpolation neighbour; the block
    # meets the source's own edges where the samples reach them, so "constant" behaves as on the whole.
    source = np.asarray(array)
    corners = source_irc[_corner_rows(shape)]  # the grids are affine: the extremes are at the corners
    low = np.clip(np.floor(corners.min(axis=0)).astype(np.int64) - 1, 0, source.shape)
    high = np.clip(np.ceil(corners.max(axis=0)).astype(np.int64) + 2, 0, source.shape)
    block = source[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    if block.size == 0:  # every sample is more than a voxel outside the source
        return np.full(shape, fill, dtype=np.float32)
    values = ndimage.map_coordinates(
        block.astype(np.float32, copy=False), (source_irc - low).T, order=order, mode="constant", cval=fill
    )
    return values.reshape(shape).astype(np.float32, copy=False)


def _corner_rows(shape: tuple[int, ...]) -> NDArray[np.int64]:
    """The rows of ``np.indices(shape).reshape(3, -1).T`` that are the grid's corners."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(len(shape), -1)
    return np.ravel_multi_index(tuple(corners), shape)


def cube_geometry(
    center_xyz: ArrayLike, size_irc: Sequence[int], spacing_xyz: ArrayLike, like: Geometry
) -> Geometry:
    """The grid of a ``size_irc`` cube at ``spacing_xyz`` centred on ``center_xyz``, its axes along
    ``like``'s (the scan's) directions."""
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    half_cols_rows_index = (np.asarray(size_irc, dtype=np.float64)[::-1] - 1) / 2.0
    origin = np.asarray(center_xyz, dtype=np.float64) - like.direction @ (spacing * half_cols_rows_index)
    return Geometry(origin, spacing, like.direction)


def covering_box(
    scan: Geometry, shape: Sequence[int], cube: Geometry, cube_shape: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Start and size (index, row, col) of the smallest box of scan voxels covering the cube, clipped to
    the scan."""
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in cube_shape], indexing="ij")).reshape(3, -1).T
    irc = scan.xyz2irc(cube.irc2xyz(corners), continuous=True)
    lo = np.maximum(np.floor(irc.min(axis=0)).astype(np.int64), 0)
    hi = np.minimum(np.ceil(irc.max(axis=0)).astype(np.int64) + 1, np.asarray(shape, dtype=np.int64))
    return lo, np.maximum(hi - lo, 0)
