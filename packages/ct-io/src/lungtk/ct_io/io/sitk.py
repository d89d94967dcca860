"""Formats read through SimpleITK: NRRD and DICOM series (and anything else SimpleITK reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, atomic_path
from lungtk.ct_io.errors import CTReadError


def _from_image(image: Any, path: Path) -> tuple[NDArray[Any], Geometry]:
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CTReadError(path, "holds RGB/vector voxels; a CT volume has one value per voxel")
    if image.GetDimension() != 3:
        raise CTReadError(path, f"is a {image.GetDimension()}D image; lungtk needs a 3D CT volume")
    geometry = Geometry(
        np.array(image.GetOrigin()),
        np.array(image.GetSpacing()),
        np.array(image.GetDirection()).reshape(3, 3),
    )
    return sitk.GetArrayFromImage(image), geometry


def to_sitk(array: NDArray[Any], geometry: Geometry) -> Any:
    import SimpleITK as sitk

    array = np.asarray(array)
    image = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array)
    image.SetOrigin(tuple(geometry.origin))
    image.SetSpacing(tuple(geometry.spacing))
    image.SetDirection(tuple(geometry.direction.reshape(-1)))
    return image


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description:" in ln or "ERROR" in ln.upper()]
    return (useful or lines or [type(exc).__name__])[-1].replace("Description:", "").strip()


def read_with_sitk(path: str | Path) -> tuple[NDArray[Any], Geometry]:
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise CTReadError(path, "file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CTReadError(path, f"cannot be read: {_first_line(exc)}") from None
    return _from_image(image, path)


def dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """Series UID -> slice files (sorted by position along the slice normal) in ``folder``."""
    import SimpleITK as sitk

    folder = str(folder)
    reader = sitk.ImageSeriesReader
    return {uid: list(reader.GetGDCMSeriesFileNames(folder, uid)) for uid in reader.GetGDCMSeriesIDs(folder)}


def read_dicom_series(folder: str | Path, series: str | None = None) -> tuple[NDArray[Any], Geometry, str]:
    """Read one DICOM series from a folder; returns array, geometry and the series UID."""
    import SimpleITK as sitk

    folder = Path(folder)
    if not folder.is_dir():
        raise CTReadError(folder, "folder not found")
    found = dicom_series(folder)
    if not found:
        raise CTReadError(folder, "no DICOM series found in this folder")
    if series is None:
        if len(found) > 1:
            listing = ", ".join(f"{uid} ({len(files)} slices)" for uid, files in found.items())
            raise CTReadError(
                folder, f"holds {len(found)} DICOM series; pick one with --series UID: {listing}"
            )
        series = next(iter(found))
    elif series not in found:
        raise CTReadError(folder, f"has no DICOM series {series}; found: {', '.join(found)}")
    files = found[series]
    if len(files) < 2:
        raise CTReadError(folder, f"DICOM series {series} has {len(files)} slice; a CT volume needs several")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CTReadError(folder, f"DICOM series {series} cannot be read: {_first_line(exc)}") from None
    array, geometry = _from_image(image, folder)
    return array, geometry, series


def write_with_sitk(
    path: str | Path, array: NDArray[Any], geometry: Geometry, *, compress: bool = True
) -> Path:
    import SimpleITK as sitk

    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(to_sitk(array, geometry), str(tmp), useCompression=compress)
    return path
