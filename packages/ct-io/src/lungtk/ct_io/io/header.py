"""Geometry and shape of a scan without decoding its voxels, and the files that hold it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from lungtk.core import Geometry
from lungtk.ct_io.errors import CTReadError
from lungtk.ct_io.io.formats import format_of, read_ct
from lungtk.ct_io.io.mhd import is_pattern, read_header, read_mhd_geometry
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


HEADER_BYTES = 1 << 20  # the most of a header read to find its data file
_MHD_DATA = re.compile(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE)
_NRRD_DATA = re.compile(r"^\s*data ?file\s*:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def data_files(path: str | os.PathLike[str]) -> list[Path] | None:
    """The data files that a detached header (.mhd, .mha, .nhdr) names, ``[]`` when the data is inside
    the file (or the file is not such a header), ``None`` when the header names them by a list or a
    pattern. Never raises for a damaged header (the reader reports that); an unreadable file raises
    OSError. A name is taken as the readers take it: ``a%b.raw`` is a file when it exists."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".mhd", ".mha", ".nhdr")):
        return []
    with path.open("rb") as fh:
        text = fh.read(HEADER_BYTES).decode("latin-1")
    match = (_NRRD_DATA if name.endswith(".nhdr") else _MHD_DATA).search(text)
    if match is None:
        return []
    value = match.group(1)
    if value.upper() == "LOCAL":
        return []
    data = path.parent / value
    if data.is_file():
        return [data]
    if value.split()[0].upper() == "LIST" or is_pattern(value):
        return None
    return [data]
