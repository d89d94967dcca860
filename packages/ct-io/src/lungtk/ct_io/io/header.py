"""Geometry and shape of a scan without decoding its voxels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lungtk.core import Geometry
from lungtk.ct_io.errors import CTReadError
from lungtk.ct_io.io.formats import format_of, read_ct
from lungtk.ct_io.io.mhd import read_header, read_mhd_geometry
from lungtk.ct_io.io.nifti import geometry_from_affine


def read_geometry(
    path: str | os.PathLike[str], *, series: str | None = None
) -> tuple[Geometry, tuple[int, ...]]:
    """(geometry, shape in index/row/col order), reading only the header where the format allows."""
    path = Path(path)
    if not path.exists():
        raise CTReadError(path, "not found; check the path")
    kind = format_of(path)
    if kind == "mhd":
        header, _ = read_header(path)
        return read_mhd_geometry(header, path)
    if kind == "nifti":
        import nibabel as nib

        try:
            image = nib.load(str(path))
        except Exception as exc:
            raise CTReadError(path, f"is not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
        shape = tuple(int(n) for n in image.shape[:3])
        return geometry_from_affine(image.affine), shape[::-1]
    if kind == "nrrd":
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise CTReadError(path, f"cannot be read: {str(exc).strip().splitlines()[-1]}") from None
        geometry = Geometry(
            np.array(reader.GetOrigin()), np.array(reader.GetSpacing()), np.array(reader.GetDirection())
        )
        return geometry, tuple(int(n) for n in reader.GetSize())[::-1]
    ct = read_ct(path, series=series)
    return ct.geometry, ct.shape
