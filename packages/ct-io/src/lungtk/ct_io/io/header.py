"""Geometry and shape of a scan without decoding its voxels."""

from __future__ import annotations

import os
from pathlib import Path

from lungtk.core import Geometry
from lungtk.ct_io.errors import CTReadError
from lungtk.ct_io.io.formats import format_of, read_ct
from lungtk.ct_io.io.mhd import read_header, read_mhd_geometry
from lungtk.ct_io.io.nifti import inspect_nifti
from lungtk.ct_io.io.sitk import nrrd_information


def read_geometry(
    path: str | os.PathLike[str], *, series: str | None = None
) -> tuple[Geometry, tuple[int, ...]]:
    """(geometry, shape in index/row/col order), reading only the header where the format allows. The
    header gets the same checks as when the scan is read (dimensions, voxel limit, sizes, geometry)."""
    path = Path(path)
    if not path.exists():
        raise CTReadError(path, "not found; check the path")
    kind = format_of(path)
    if kind == "mhd":
        header, _ = read_header(path)
        return read_mhd_geometry(header, path)
    if kind == "nifti":
        info = inspect_nifti(path)
        return info.geometry, info.shape
    if kind == "nrrd":
        return nrrd_information(path)
    ct = read_ct(path, series=series)
    return ct.geometry, ct.shape
