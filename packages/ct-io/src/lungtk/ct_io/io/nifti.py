"""NIfTI-1/2 (.nii, .nii.gz) through nibabel, converted between NIfTI's RAS+ world and ITK's LPS."""

from __future__ import annotations

import gzip
import logging
import math
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, write_bytes
from lungtk.core.threads import PROCESS_STATE_LOCK
from lungtk.ct_io.errors import CTReadError, writing
from lungtk.ct_io.io.limits import check_available, check_voxels, file_size

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def geometry_from_affine(affine: NDArray[np.float64]) -> Geometry:
    """ITK/LPS geometry of a NIfTI voxel-to-RAS affine; ``ValueError`` if it has a zero, infinite or NaN
    column (no spacing) or is not invertible."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"the affine must be a finite 4x4 matrix, got {np.round(affine, 4).tolist()}")
    linear = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if not np.all(spacing > 0):
        raise ValueError(f"an axis has zero length (spacing {tuple(float(v) for v in spacing)})")
    return Geometry(_RAS_TO_LPS @ affine[:3, 3], spacing, linear / spacing)


def affine_from_geometry(geometry: Geometry) -> NDArray[np.float64]:
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ geometry.direction * geometry.spacing[None, :]
    affine[:3, 3] = _RAS_TO_LPS @ geometry.origin
    return affine


@contextmanager
def _quiet() -> Iterator[None]:
    """nibabel reports (and silently fixes) header problems on its logger and as warnings; lungtk checks
    the header itself and says what matters, so neither reaches the terminal."""
    from nibabel import imageglobals

    with PROCESS_STATE_LOCK:
        logger = imageglobals.logger
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                yield
        finally:
            logger.setLevel(level)


@dataclass(frozen=True)
class NiftiHeader:
    """What a NIfTI header claims, checked: (index, row, col) shape, geometry, bytes of voxel data."""

    shape: tuple[int, int, int]
    geometry: Geometry
    n_bytes: int


def _raw_header(path: Path) -> Any:
    """The header as written (nibabel's checks and fixes off), from at most 540 bytes of the file."""
    import nibabel as nib

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as fh:
            block = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise CTReadError(path, f"is not a readable NIfTI file ({_reason(exc)})") from None
    if len(block) < 348:
        raise CTReadError(
            path, f"is not a readable NIfTI file (only {len(block)} bytes, shorter than a NIfTI header)"
        )
    for order in "<>":
        size = struct.unpack(f"{order}i", block[:4])[0]
        if size in (348, 540):
            break
    else:
        raise CTReadError(
            path, "is not a readable NIfTI file (its first 4 bytes are not a NIfTI header size)"
        )
    klass = nib.Nifti1Header if size == 348 else nib.Nifti2Header
    if len(block) < size:
        raise CTReadError(path, "is not a readable NIfTI file (the header is cut short)")
    try:
        with _quiet():
            return klass(block[:size], endianness=order, check=False)
    except Exception as exc:  # nibabel's own header errors are not one class
        raise CTReadError(path, f"is not a readable NIfTI file ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _spacing_source(header: Any, path: Path) -> None:
    """Refuse a header whose voxel size nibabel would invent (zero or NaN pixdim, where the pixdims are
    what sets the spacing) or whose affine is not finite."""
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    if sform > 0:
        srow = np.stack([header["srow_x"], header["srow_y"], header["srow_z"]]).astype(np.float64)
        if not np.all(np.isfinite(srow)):
            raise CTReadError(
                path, "has NaN or infinite numbers in its sform affine (srow_x/y/z); fix the header"
            )
        length = np.linalg.norm(srow[:, :3], axis=0)
        if not np.all(length > 0):
            axis = "ijk"[int(np.argmin(length))]
            raise CTReadError(
                path,
                f"its sform affine gives axis {axis} zero length (srow column {'ijk'.index(axis)} is zero), so "
                "the voxel size is unknown; fix the header",
            )
        return
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    which = "qform" if qform > 0 else "pixdim (no qform or sform)"
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise CTReadError(
            path,
            f"has voxel size pixdim[1:4] = {tuple(float(v) for v in pixdim)}, which sets the spacing through "
            f"its {which}; a zero or NaN voxel size is unknown (nibabel would assume 1 mm); fix the header",
        )
    if qform > 0:
        quatern = [
            header[k] for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
        ]
        if not np.all(np.isfinite(np.asarray(quatern, dtype=np.float64))):
            raise CTReadError(
                path, "has NaN or infinite numbers in its qform (quatern_* / qoffset_*); fix the header"
            )


def inspect_nifti(path: str | Path) -> NiftiHeader:
    """Check a NIfTI header without reading its voxels: dimensions (3D, one value per voxel), the size it
    claims against lungtk's voxel limit and the file's size, and a geometry nobody had to invent."""

    path = Path(path)
    if not path.is_file():
        raise CTReadError(path, "file not found" if not path.exists() else "is not a file")
    header = _raw_header(path)
    dims = [int(v) for v in header["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise CTReadError(path, f"has dim[0] = {ndim}; a NIfTI header needs 1-7 dimensions (damaged header?)")
    sizes = dims[1 : ndim + 1]
    if min(sizes) < 1:
        raise CTReadError(path, f"has an empty or negative dimension (dim {sizes})")
    check_voxels(path, sizes, "its header")
    while len(sizes) > 3 and sizes[-1] == 1:
        sizes = sizes[:-1]
    if len(sizes) == 5:
        raise CTReadError(path, "holds RGB/vector voxels; a CT volume has one value per voxel")
    if len(sizes) == 4:
        raise CTReadError(path, f"is a 4D series of {sizes[3]} volumes; lungtk needs one 3D volume")
    if len(sizes) != 3:
        raise CTReadError(path, f"is a {len(sizes)}D image of shape {tuple(sizes)}; lungtk needs a 3D volume")
    try:
        dtype = header.get_data_dtype()
    except Exception:
        raise CTReadError(path, f"has an unknown NIfTI data type code {int(header['datatype'])}") from None
    if dtype.names is not None:
        raise CTReadError(path, "holds RGB/vector voxels; a CT volume has one value per voxel")
    n_bytes = math.prod(dims[1 : ndim + 1]) * dtype.itemsize
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0:
        raise CTReadError(path, f"has an invalid vox_offset {offset}; the header is damaged")
    if header["magic"] in (b"n+1", b"n+2"):  # data in the same file, after vox_offset
        gz = path.name.lower().endswith(".gz")
        available = file_size(path) - (0 if gz else int(offset))
        check_available(path, n_bytes, available, compressed="gzip" if gz else None)
    _spacing_source(header, path)
    try:
        with _quiet():
            affine = header.get_best_affine()
        geometry = geometry_from_affine(affine)
    except Exception as exc:
        raise CTReadError(path, f"has an invalid affine: {exc}") from None
    return NiftiHeader((sizes[2], sizes[1], sizes[0]), geometry, n_bytes)


def read_nifti(path: str | Path) -> tuple[NDArray[Any], Geometry]:
    import nibabel as nib

    path = Path(path)
    info = inspect_nifti(path)  # before nibabel allocates anything
    try:
        with _quiet():
            image = nib.load(str(path))
            array = np.asanyarray(image.dataobj)
    except MemoryError:
        raise CTReadError(
            path, f"needs {info.n_bytes:,} bytes of memory to load, more than is free"
        ) from None
    except Exception as exc:  # nibabel, gzip and zlib raise many types on damaged files
        raise CTReadError(path, f"is not a readable NIfTI file ({_reason(exc)})") from None
    if array.dtype.names is not None or (array.ndim > 3 and math.prod(array.shape[3:]) > 1):
        raise CTReadError(path, "holds RGB/vector voxels or several volumes; lungtk needs one 3D volume")
    array = array.reshape(array.shape[:3])
    if array.shape[::-1] != info.shape:
        raise CTReadError(
            path, f"holds voxels of shape {array.shape}, not the {info.shape[::-1]} its header claims"
        )
    return np.ascontiguousarray(array.transpose(2, 1, 0)), info.geometry


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
    with writing(path):
        write_bytes(path, data)
    return path
