"""Pick a reader or writer by path: ``read_ct`` and ``write_image``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry
from lungtk.ct_io.errors import CTReadError
from lungtk.ct_io.io.mhd import read_mhd, write_mhd
from lungtk.ct_io.io.nifti import read_nifti, write_nifti
from lungtk.ct_io.io.sitk import read_dicom_series, read_with_sitk, write_with_sitk
from lungtk.ct_io.volume import CTVolume

# The image files lungtk reads, by format (lower case): the one list of scan suffixes.
SUFFIXES_BY_FORMAT = {
    "mhd": (".mhd", ".mha"),  # MetaImage: header + .raw/.zraw, or all in one
    "nifti": (".nii.gz", ".nii"),
    "nrrd": (".nrrd", ".nhdr"),  # NRRD: all in one, or a detached header naming its data file
}
SCAN_SUFFIXES = tuple(s for suffixes in SUFFIXES_BY_FORMAT.values() for s in suffixes)
DICOM_SUFFIX = ".dcm"  # a DICOM slice stands for the series folder it is in
READ_SUFFIXES = (*SCAN_SUFFIXES, "<DICOM folder>")
# .nhdr is read, not written: its data file is named inside the header, which an atomic write (a
# temporary name renamed into place) would leave pointing at the temporary name.
WRITE_SUFFIXES = tuple(s for s in SCAN_SUFFIXES if s != ".nhdr")


def format_of(path: str | os.PathLike[str]) -> str:
    """``mhd``, ``nifti``, ``nrrd``, ``dicom`` or ``unknown``."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    for kind, suffixes in SUFFIXES_BY_FORMAT.items():
        if name.endswith(suffixes):
            return kind
    if name.endswith(DICOM_SUFFIX):
        return "dicom"
    return "unknown"


def series_uid_of(path: str | os.PathLike[str]) -> str:
    """The file name without its image extension, as LUNA16 names scans by series UID."""
    name = Path(path).name
    for suffix in SCAN_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_values(array: NDArray[Any], path: Path) -> None:
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise CTReadError(path, f"contains {bad} NaN/infinite voxels; fix or mask them before analysis")
    elif array.dtype.kind not in "iub":
        raise CTReadError(path, f"has unsupported pixel type {array.dtype}")


def _from_plugin(path: Path) -> CTVolume | None:
    """The volume a plugin's reader (hook ``lungtk_ct_reader``) makes of ``path``, or ``None`` if no plugin
    reads it. Plugins are loaded on the first call, not when ``lungtk.ct_io`` is imported."""
    from lungtk.core import get_plugins  # cached: one hook call per read once loaded

    reader = get_plugins().reader_for(path)
    if reader is None:
        return None
    volume = reader(path)  # a LungtkError naming the plugin if it fails or returns something else
    if isinstance(volume, CTVolume):
        return volume
    try:
        return CTVolume(
            np.asarray(volume.array),
            volume.geometry,
            series_uid=str(volume.series_uid),
            path=getattr(volume, "path", None) or path,
        )
    except (TypeError, ValueError) as exc:
        raise CTReadError(
            path, f"the reader of {reader.plugin.label} returned an unusable volume: {exc}"
        ) from exc


def read_ct(
    path: str | os.PathLike[str], *, series: str | None = None, mmap: bool = False, use_plugins: bool = True
) -> CTVolume:
    """Read a CT volume: MHD/MHA, NIfTI, NRRD, or a DICOM series folder (pick one with ``series``).

    Installed plugins are asked first (hook ``lungtk_ct_reader``); the first that answers reads the file,
    and the built-in readers read the rest. ``use_plugins=False`` reads with the built-in readers only (a
    plugin's reader that post-processes them calls this).
    """
    path = Path(path)
    volume = _from_plugin(path) if use_plugins else None
    if volume is not None:
        if not mmap:
            _check_values(np.asarray(volume.array), path)
        return volume
    if not path.exists():
        raise CTReadError(path, "not found; check the path")
    kind = format_of(path)
    if kind == "dicom":
        folder = path if path.is_dir() else path.parent
        array, geometry, uid = read_dicom_series(folder, series)
        volume = CTVolume(array, geometry, series_uid=uid, path=folder)
    else:
        if series is not None and kind != "unknown":  # asked for a series where there is one image
            raise CTReadError(
                path,
                f"is a single {kind.upper()} image, not a DICOM folder, so it has no series to pick "
                f"({series!r} was asked for); give its folder of DICOM slices, or leave the series out",
            )
        if kind == "mhd":
            array, geometry = read_mhd(path, mmap=mmap)
        elif kind == "nifti":
            array, geometry = read_nifti(path)
        elif kind == "nrrd":
            array, geometry = read_with_sitk(path)
        else:
            raise CTReadError(path, f"unknown image format; lungtk reads {', '.join(READ_SUFFIXES)}")
        volume = CTVolume(array, geometry, series_uid=series_uid_of(path), path=path)
    if not mmap:
        _check_values(volume.array, path)
    return volume


def write_image(
    path: str | os.PathLike[str], array: NDArray[Any] | CTVolume, geometry: Geometry | None = None
) -> Path:
    """Write a volume or a label mask (bool / integer array) with its geometry; the format follows the
    suffix. Writes are atomic."""
    if isinstance(array, CTVolume):
        geometry = geometry or array.geometry
        array = np.asarray(array.array)
    if geometry is None:
        raise ValueError("write_image needs a geometry for a bare array")
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(WRITE_SUFFIXES):
        raise CTReadError(path, f"unknown output format; lungtk writes {', '.join(WRITE_SUFFIXES)}")
    if name.endswith(".mhd"):
        return write_mhd(path, array, geometry)
    if name.endswith(SUFFIXES_BY_FORMAT["nifti"]):
        return write_nifti(path, array, geometry)
    return write_with_sitk(path, array, geometry)  # .mha, .nrrd
