"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, converted between NIfTI's RAS+ world and ITK's LPS."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, write_bytes
from lungtk.ct_io.errors import CTReadError

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def geometry_from_affine(affine: NDArray[np.float64]) -> Geometry:
    """ITK/LPS geometry of a NIfTI voxel-to-RAS affine."""
    linear = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    return Geometry(_RAS_TO_LPS @ affine[:3, 3], spacing, linear / spacing)


def affine_from_geometry(geometry: Geometry) -> NDArray[np.float64]:
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ geometry.direction * geometry.spacing[None, :]
    affine[:3, 3] = _RAS_TO_LPS @ geometry.origin
    return affine


def read_nifti(path: str | Path) -> tuple[NDArray[Any], Geometry]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise CTReadError(path, "file not found")
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)
    except (ImageFileError, OSError, EOFError, ValueError) as exc:
        raise CTReadError(path, f"is not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if array.dtype.names is not None or (array.ndim == 5 and array.shape[4] > 1):
        raise CTReadError(path, "holds RGB/vector voxels; a CT volume has one value per voxel")
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 4:
        raise CTReadError(path, f"is a 4D series of {array.shape[3]} volumes; lungtk needs one 3D volume")
    if array.ndim != 3:
        raise CTReadError(path, f"is a {array.ndim}D image of shape {array.shape}; lungtk needs a 3D volume")
    try:
        geometry = geometry_from_affine(image.affine)
    except ValueError as exc:
        raise CTReadError(path, f"has an invalid affine: {exc}") from None
    return np.ascontiguousarray(array.transpose(2, 1, 0)), geometry


def write_nifti(path: str | Path, array: NDArray[Any], geometry: Geometry) -> Path:
    import nibabel as nib

    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    affine = affine_from_geometry(geometry)
    image = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    data = image.to_bytes()
    if path.name.lower().endswith(".gz"):
        # mtime=0: the same volume always gives the same bytes (gzip would stamp the current time).
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes(path, data)
    return path
