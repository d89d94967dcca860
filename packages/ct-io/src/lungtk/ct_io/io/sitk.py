"""Formats read through SimpleITK: NRRD and DICOM series (and anything else SimpleITK reads).

SimpleITK allocates the whole image from the header before it reads a byte of data, so every header is
checked first: a NRRD header is parsed here (sizes, type, encoding, data file) and DICOM slices are
inspected, against lungtk's voxel limit and the bytes on disk. ITK's own warnings are switched off: what
matters reaches the user as a lungtk error.
"""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, atomic_path
from lungtk.ct_io.errors import CTReadError, MultipleSeriesError, writing
from lungtk.ct_io.io.limits import check_available, check_voxels, file_size


@cache
def sitk_module() -> Any:
    """SimpleITK with ITK's warnings (printed straight to stderr by C++) switched off."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def geometry_of(origin: Any, spacing: Any, direction: Any, path: Path) -> Geometry:
    """A ``Geometry`` from what ITK read, or a ``CTReadError`` naming the file for NaN / infinite / zero
    spacing, origin or direction."""
    try:
        return Geometry(np.array(origin), np.array(spacing), np.array(direction).reshape(3, 3))
    except ValueError as exc:
        raise CTReadError(path, f"has an invalid geometry in its header: {exc}") from None


def _from_image(image: Any, path: Path) -> tuple[NDArray[Any], Geometry]:
    sitk = sitk_module()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CTReadError(path, "holds RGB/vector voxels; a CT volume has one value per voxel")
    if image.GetDimension() != 3:
        raise CTReadError(path, f"is a {image.GetDimension()}D image; lungtk needs a 3D CT volume")
    geometry = geometry_of(image.GetOrigin(), image.GetSpacing(), image.GetDirection(), path)
    return sitk.GetArrayFromImage(image), geometry


def to_sitk(array: NDArray[Any], geometry: Geometry) -> Any:
    sitk = sitk_module()
    array = np.asarray(array)
    image = sitk.GetImageFromArray(array.astype(np.uint8) if array.dtype == bool else array)
    image.SetOrigin(tuple(geometry.origin))
    image.SetSpacing(tuple(geometry.spacing))
    image.SetDirection(tuple(geometry.direction.reshape(-1)))
    return image


def _first_line(exc: Exception) -> str:
    """The useful line of an ITK exception, without ITK's class names, object addresses and file paths."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Description:" in ln or "ERROR" in ln.upper()]
    line = (useful or lines or [type(exc).__name__])[-1].replace("Description:", "").strip()
    line = re.sub(r"^(itk::|ITK )?ERROR:\s*", "", line)
    line = re.sub(r"^\w+\(0x[0-9a-f]+\):\s*", "", line)
    line = line.rstrip(":").strip()
    return line or type(exc).__name__


# -- NRRD header -----------------------------------------------------------------------------------------

_NRRD_BYTES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: (
        "short",
        "short int",
        "signed short",
        "signed short int",
        "int16",
        "int16_t",
        "ushort",
        "unsigned short",
        "unsigned short int",
        "uint16",
        "uint16_t",
    ),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: (
        "longlong",
        "long long",
        "long long int",
        "signed long long",
        "signed long long int",
        "int64",
        "int64_t",
        "ulonglong",
        "unsigned long long",
        "unsigned long long int",
        "uint64",
        "uint64_t",
        "double",
    ),
}
_ITEMSIZE = {name: size for size, names in _NRRD_BYTES.items() for name in names}
_MAX_NRRD_HEADER = 1 << 20


def _nrrd_header(path: Path) -> tuple[dict[str, str], int]:
    """The fields of a NRRD header (lower-case keys) and the byte offset where it ends."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_NRRD_HEADER)
    except OSError as exc:
        raise CTReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not raw.startswith(b"NRRD000"):
        raise CTReadError(path, "is not a NRRD file (it does not start with the NRRD000x magic line)")
    fields: dict[str, str] = {}
    offset = 0
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        offset += len(line) + 1
        text = line.decode("latin-1").rstrip("\r")
        if i == 0 or text.startswith("#"):
            continue
        if not text:
            break
        if ":=" in text:  # key/value pairs carry no geometry
            continue
        key, sep, value = text.partition(": ")
        if not sep:
            raise CTReadError(path, f"not a NRRD header (line {text[:40]!r} is not 'field: value')")
        fields[key.strip().lower()] = value.strip()
    else:
        offset = len(raw)
    return fields, offset


def _nrrd_ints(fields: dict[str, str], key: str, path: Path) -> list[int]:
    values = []
    for token in fields[key].split():
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not value.is_integer():
            raise CTReadError(path, f"NRRD field '{key}' must be whole numbers, got {fields[key]!r}")
        values.append(int(value))
    return values


def check_nrrd(path: Path) -> None:
    """Check what a NRRD header claims (sizes, type, encoding) against lungtk's voxel limit and the data on
    disk before SimpleITK allocates the image."""
    fields, header_end = _nrrd_header(path)
    for key in ("dimension", "sizes", "type", "encoding"):
        if key not in fields:
            raise CTReadError(path, f"NRRD header has no '{key}' field")
    dimension = _nrrd_ints(fields, "dimension", path)
    sizes = _nrrd_ints(fields, "sizes", path)
    if len(dimension) != 1 or len(sizes) != dimension[0]:
        raise CTReadError(
            path, f"NRRD 'sizes' ({fields['sizes']!r}) does not match 'dimension' {fields['dimension']}"
        )
    if min(sizes) < 1:
        raise CTReadError(path, f"has an empty or negative dimension (sizes {fields['sizes']!r})")
    if len(sizes) < 3:
        raise CTReadError(path, f"is a {len(sizes)}D image; lungtk needs a 3D CT volume")
    for key in ("spacings", "space origin", "space directions", "thicknesses"):
        if key in fields and re.search(r"\b(nan|inf|infinity)\b", fields[key], re.IGNORECASE):
            raise CTReadError(path, f"NRRD field '{key}' has NaN or infinite numbers: {fields[key]!r}")
    if "space directions" in fields:
        for vector in re.findall(r"\(([^)]*)\)", fields["space directions"]):
            try:
                values = [float(v) for v in vector.split(",")]
            except ValueError:
                raise CTReadError(
                    path, f"NRRD field 'space directions' is not numbers: {fields['space directions']!r}"
                ) from None
            if not any(values):
                raise CTReadError(
                    path,
                    f"NRRD field 'space directions' has a zero vector, so an axis has no voxel size: "
                    f"{fields['space directions']!r}",
                )
    if "spacings" in fields:
        try:
            spacings = [float(v) for v in fields["spacings"].split()]
        except ValueError:
            raise CTReadError(path, f"NRRD field 'spacings' is not numbers: {fields['spacings']!r}") from None
        if any(v == 0 for v in spacings):  # NaN ("nan") marks a non-spatial axis; zero is never right
            raise CTReadError(path, f"NRRD field 'spacings' has a zero voxel size: {fields['spacings']!r}")
    count = check_voxels(path, sizes, "its header")
    itemsize = _ITEMSIZE.get(fields["type"].lower())
    if itemsize is None:
        raise CTReadError(path, f"has NRRD type {fields['type']!r}, which lungtk does not read")
    n_bytes = count * itemsize
    data_name = fields.get("data file", fields.get("datafile"))
    if data_name is not None:
        if data_name.split()[0].upper() == "LIST" or "%" in data_name or len(data_name.split()) > 1:
            raise CTReadError(
                path,
                f"'data file: {data_name}' is a multi-file NRRD form (a list, or a '%' pattern with its "
                "numbers), which lungtk does not read; if it is one file, rename it without '%' or spaces "
                "and change the header",
            )
        data_path, offset = path.parent / data_name, 0
        if not data_path.is_file():
            raise CTReadError(path, f"its data file {data_name} is missing (expected beside the header)")
    else:
        data_path, offset = path, header_end
    available = file_size(data_path) - offset
    encoding = fields["encoding"].lower()
    if encoding == "raw":
        skip = _nrrd_ints(fields, "byte skip", path)[0] if "byte skip" in fields else 0
        if skip < -1:
            raise CTReadError(path, f"NRRD 'byte skip' must be -1 or more, got {skip}")
        check_available(data_path, n_bytes, available - max(skip, 0))
    elif encoding in ("gzip", "gz"):
        check_available(data_path, n_bytes, available, compressed="gzip")
    elif encoding in ("ascii", "text", "txt"):
        check_available(data_path, 2 * count - 1, available)  # a digit and a separator per voxel at least
    elif encoding == "hex":
        check_available(data_path, 2 * n_bytes, available)
    elif encoding not in ("bzip2", "bz2"):
        raise CTReadError(path, f"has NRRD encoding {fields['encoding']!r}, which lungtk does not read")


def nrrd_information(path: str | Path) -> tuple[Geometry, tuple[int, ...]]:
    """Geometry and (index, row, col) shape of a NRRD file, from its header only."""
    sitk = sitk_module()
    path = Path(path)
    check_nrrd(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CTReadError(path, f"cannot be read: {_first_line(exc)}") from None
    if reader.GetDimension() != 3:
        raise CTReadError(path, f"is a {reader.GetDimension()}D image; lungtk needs a 3D CT volume")
    geometry = geometry_of(reader.GetOrigin(), reader.GetSpacing(), reader.GetDirection(), path)
    return geometry, tuple(int(n) for n in reader.GetSize())[::-1]


def read_with_sitk(path: str | Path) -> tuple[NDArray[Any], Geometry]:
    sitk = sitk_module()
    path = Path(path)
    if not path.is_file():
        raise CTReadError(path, "file not found" if not path.exists() else "is not a file")
    if path.name.lower().endswith((".nrrd", ".nhdr")):
        check_nrrd(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CTReadError(path, f"cannot be read: {_first_line(exc)}") from None
    except MemoryError:
        raise CTReadError(path, "needs more memory to load than is free") from None
    return _from_image(image, path)


# -- DICOM -----------------------------------------------------------------------------------------------

_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # tag (7FE0,0010), little endian
_MAX_TAIL = 64 << 20


def dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """Series UID -> slice files (sorted by position along the slice normal) in ``folder``."""
    sitk = sitk_module()
    folder = str(folder)
    reader = sitk.ImageSeriesReader
    return {uid: list(reader.GetGDCMSeriesFileNames(folder, uid)) for uid in reader.GetGDCMSeriesIDs(folder)}


def _check_pixel_data(path: Path, needed: int) -> None:
    """An uncompressed slice's pixel data element must be whole and hold ``needed`` bytes (GDCM reads a
    truncated one without a word). Compressed (encapsulated) pixel data has no length to check."""
    size = file_size(path)
    span = min(size, needed + (64 << 10))
    if span > _MAX_TAIL:
        return
    with path.open("rb") as fh:
        fh.seek(size - span)
        tail = fh.read(span)
    start = size - span
    at = tail.find(_PIXEL_DATA)
    if at < 0:
        if size < needed:
            raise CTReadError(
                path, f"DICOM slice is truncated: {size:,} bytes cannot hold its {needed:,} bytes of pixels"
            )
        return
    explicit = tail[at + 4 : at + 6] in (b"OW", b"OB", b"OF", b"UN")
    head = 12 if explicit else 8
    if len(tail) < at + head:
        raise CTReadError(path, "DICOM slice is truncated inside its pixel data element")
    length = int.from_bytes(tail[at + head - 4 : at + head], "little")
    if length == 0xFFFFFFFF:  # encapsulated: compressed frames
        return
    if start + at + head + length > size:
        have = size - (start + at + head)
        raise CTReadError(
            path, f"DICOM slice is truncated: its pixel data has {have:,} of the {length:,} bytes it declares"
        )
    if length < needed:
        raise CTReadError(
            path, f"DICOM slice holds {length:,} bytes of pixel data, but its rows x columns need {needed:,}"
        )


def _check_dicom_size(folder: Path, series: str, files: list[str]) -> None:
    """The voxels a series claims (first slice's rows x columns x frames, times the slices) against the
    voxel limit, and each slice's pixel data against what its header claims."""
    sitk = sitk_module()
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CTReadError(files[0], f"DICOM slice cannot be read: {_first_line(exc)}") from None
    size = [int(n) for n in reader.GetSize()]
    frames = size[2] if len(size) == 3 else 1
    check_voxels(folder, [size[0], size[1], frames * len(files)], f"DICOM series {series}")
    one = sitk.Image([1, 1], reader.GetPixelID(), reader.GetNumberOfComponents())
    bits = reader.GetMetaData("0028|0100").strip() if reader.HasMetaDataKey("0028|0100") else ""
    itemsize = int(bits) // 8 if bits.isdigit() and int(bits) in (8, 16, 32, 64) else None
    itemsize = itemsize or sitk.GetArrayViewFromImage(one).dtype.itemsize
    needed = size[0] * size[1] * frames * reader.GetNumberOfComponents() * itemsize
    for name in files:
        _check_pixel_data(Path(name), needed)


def _looks_like_dicom(path: Path) -> bool:
    if path.name.startswith(".") or path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _check_left_out(folder: Path, found: dict[str, list[str]]) -> None:
    """GDCM leaves out a slice it cannot parse (a truncated file) and reads the series without it: a
    volume with a slice missing. A DICOM file of the folder that names one of the series but is in none
    is an error (other DICOM objects, a DICOMDIR or a report, are left alone)."""
    held = {Path(f).name for files in found.values() for f in files}
    uids = [uid.encode("ascii", "replace") for uid in found]
    for path in sorted(folder.iterdir()):
        if path.name in held or not path.is_file() or not _looks_like_dicom(path):
            continue
        try:
            with path.open("rb") as fh:
                head = fh.read(1 << 20)
        except OSError:
            continue
        if any(uid in head for uid in uids):
            raise CTReadError(
                path,
                "is a slice of the DICOM series but cannot be read (damaged or truncated); repair or remove "
                "it, or the series would be read with a slice missing",
            )


def read_dicom_series(folder: str | Path, series: str | None = None) -> tuple[NDArray[Any], Geometry, str]:
    """Read one DICOM series from a folder; returns array, geometry and the series UID."""
    sitk = sitk_module()
    folder = Path(folder)
    if not folder.is_dir():
        raise CTReadError(folder, "folder not found")
    found = dicom_series(folder)
    if not found:
        from lungtk.ct_io.io.formats import SCAN_SUFFIXES  # not at import: formats imports this module

        scans = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(SCAN_SUFFIXES))
        if scans:
            raise CTReadError(
                folder,
                f"is a folder of {len(scans)} scan file(s) ({', '.join(scans[:2])}{', ...' if len(scans) > 2 else ''}), "
                "not a DICOM series; name one scan file",
            )
        raise CTReadError(folder, "no DICOM series found in this folder")
    if series is None:
        if len(found) > 1:
            raise MultipleSeriesError(folder, {uid: len(files) for uid, files in found.items()})
        series = next(iter(found))
    elif series not in found:
        raise CTReadError(folder, f"has no DICOM series {series}; found: {', '.join(found)}")
    _check_left_out(folder, found)
    files = found[series]
    if len(files) < 2:
        raise CTReadError(folder, f"DICOM series {series} has {len(files)} slice; a CT volume needs several")
    _check_dicom_size(folder, series, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CTReadError(folder, f"DICOM series {series} cannot be read: {_first_line(exc)}") from None
    except MemoryError:
        raise CTReadError(folder, f"DICOM series {series} needs more memory to load than is free") from None
    array, geometry = _from_image(image, folder)
    return array, geometry, series


def write_with_sitk(
    path: str | Path, array: NDArray[Any], geometry: Geometry, *, compress: bool = True
) -> Path:
    sitk = sitk_module()
    path = Path(path)
    with writing(path), atomic_path(path) as tmp:
        try:
            sitk.WriteImage(to_sitk(array, geometry), str(tmp), useCompression=compress)
        except RuntimeError as exc:  # ITK reports a full disk or a vanished folder this way
            raise OSError(f"ITK could not write the file: {_first_line(exc)}") from None
    return path
