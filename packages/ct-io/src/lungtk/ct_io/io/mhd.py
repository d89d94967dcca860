"""MetaImage (.mhd + .raw, or .mha) read and written directly, without SimpleITK.

Reading the header ourselves lets a scan be memory-mapped and lets every problem (missing or truncated
data file, header/size mismatch, unsupported pixel type) be reported in one precise line.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, atomic_path
from lungtk.ct_io.errors import CTReadError, writing
from lungtk.ct_io.io.limits import check_available, check_voxels, file_size

ELEMENT_TYPES: dict[str, str] = {
    "MET_UCHAR": "u1",
    "MET_CHAR": "i1",
    "MET_USHORT": "u2",
    "MET_SHORT": "i2",
    "MET_UINT": "u4",
    "MET_INT": "i4",
    "MET_ULONG_LONG": "u8",
    "MET_LONG_LONG": "i8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}
_TYPE_OF_DTYPE = {np.dtype(v).str[1:]: k for k, v in ELEMENT_TYPES.items()}


_MAX_HEADER = 1 << 20  # a MetaImage header is a few hundred bytes; never read more than this as one
# MetaIO's multi-file forms: "LIST" or a printf pattern with its numbers ("slice%03d.raw 1 40 1").
_PATTERN = re.compile(r"%[-+ #0]*\d*[dDiIuU]")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def read_header(path: Path) -> tuple[dict[str, str], int]:
    """Parse the ``Key = Value`` header; return it and the byte offset where it ends."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_HEADER if path.suffix.lower() == ".mhd" else 1 << 16)
    except FileNotFoundError:
        raise CTReadError(path, "file not found") from None
    except IsADirectoryError:
        raise CTReadError(path, "is a folder, not a MetaImage file") from None
    except OSError as exc:
        raise CTReadError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise CTReadError(path, "is empty; expected a MetaImage header (ObjectType = Image, DimSize, ...)")
    header: dict[str, str] = {}
    offset = 0
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        text = line.decode("latin-1").strip()
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or "\x00" in text:
            raise CTReadError(path, f"not a MetaImage header (line {text[:40]!r} is not 'Key = Value')")
        header[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "ElementDataFile" not in header:
        raise CTReadError(
            path, "MetaImage header has no ElementDataFile line; the file is damaged or not MetaImage"
        )
    return header, offset


def _numbers(header: dict[str, str], key: str, path: Path, count: int, default: Any = None) -> list[float]:
    if key not in header:
        if default is None:
            raise CTReadError(path, f"MetaImage header is missing {key}")
        return list(default)
    try:
        values = [float(v) for v in header[key].split()]
    except ValueError:
        raise CTReadError(path, f"MetaImage header has a non-numeric {key}: {header[key]!r}") from None
    if len(values) != count:
        raise CTReadError(
            path, f"MetaImage {key} has {len(values)} values, expected {count}: {header[key]!r}"
        )
    if not all(math.isfinite(v) for v in values):
        raise CTReadError(path, f"MetaImage {key} must be finite numbers, got {header[key]!r}")
    return values


def _integers(header: dict[str, str], key: str, path: Path, count: int, default: Any = None) -> list[int]:
    """Whole numbers (``512`` or ``512.0``; never a truncated ``511.7``)."""
    if key not in header and default is not None:
        return list(default)
    values = _numbers(header, key, path, count)
    if not all(v.is_integer() for v in values):
        raise CTReadError(path, f"MetaImage {key} must be whole numbers, got {header[key]!r}")
    return [int(v) for v in values]


def _first(header: dict[str, str], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in header), None)


def _flag(header: dict[str, str], keys: tuple[str, ...], path: Path) -> bool:
    key = _first(header, keys)
    if key is None:
        return False
    value = header[key].lower()
    if value not in _TRUE | _FALSE:
        raise CTReadError(path, f"MetaImage {key} must be True or False, got {header[key]!r}")
    return value in _TRUE


def read_mhd_geometry(header: dict[str, str], path: Path) -> tuple[Geometry, tuple[int, int, int]]:
    """Geometry and (index, row, col) shape described by a parsed MetaImage header."""
    ndims = _integers(header, "NDims", path, 1)[0]
    if ndims != 3:
        raise CTReadError(path, f"is a {ndims}D image; lungtk needs a 3D CT volume")
    size = _integers(header, "DimSize", path, 3)
    if min(size) < 1:
        raise CTReadError(path, f"has an empty or negative dimension (DimSize {header['DimSize']!r})")
    check_voxels(path, size, "its DimSize")
    spacing_key = _first(header, ("ElementSpacing", "ElementSize"))
    if spacing_key is None:
        raise CTReadError(
            path,
            "MetaImage header has no ElementSpacing; lungtk does not guess the voxel size: add "
            "'ElementSpacing = x y z' (mm) to the header",
        )
    spacing = _numbers(header, spacing_key, path, 3)
    if min(spacing) <= 0:
        raise CTReadError(path, f"MetaImage {spacing_key} must be positive (mm), got {header[spacing_key]!r}")
    origin_key = _first(header, ("Offset", "Origin", "Position"))
    origin = _numbers(header, origin_key, path, 3) if origin_key else [0.0, 0.0, 0.0]
    matrix_key = _first(header, ("TransformMatrix", "Rotation", "Orientation"))
    matrix = _numbers(header, matrix_key, path, 9) if matrix_key else list(np.eye(3).reshape(-1))
    # MetaIO stores the direction of axis i in TransformMatrix[3i:3i+3], i.e. the transpose.
    try:
        geometry = Geometry(np.array(origin), np.array(spacing), np.array(matrix).reshape(3, 3).T)
    except ValueError as exc:
        key = {"spacing": spacing_key, "origin": origin_key or "Offset"}.get(
            str(exc).split()[0], matrix_key or "TransformMatrix"
        )
        raise CTReadError(path, f"has an invalid geometry in its header ({key}): {exc}") from None
    return geometry, (size[2], size[1], size[0])


def _data_location(header: dict[str, str], path: Path, header_end: int) -> tuple[Path, int, str]:
    data_name = header["ElementDataFile"]
    if not data_name:
        raise CTReadError(path, "MetaImage ElementDataFile is empty; it must name the data file or be LOCAL")
    if data_name == "LOCAL":
        return path, header_end, data_name
    data_path = path.parent / data_name
    # A name with a "%" is a file name (a scan called "a%b"), unless it is one of MetaIO's multi-file forms.
    if data_name.split()[0] == "LIST" or (not data_path.is_file() and is_pattern(data_name)):
        raise CTReadError(
            path,
            f"multi-file MetaImage data ({data_name!r}) is not supported; convert the series to one file "
            "(.mha, .nii.gz) first",
        )
    if not data_path.is_file():
        raise CTReadError(
            path, f"its data file {data_name} is missing or not a file (expected beside the header)"
        )
    return data_path, 0, data_name


def is_pattern(data_name: str) -> bool:
    """Whether a header's data-file value is a multi-file pattern: a printf number (``slice%03d.raw``),
    or a ``%`` followed by the pattern's numbers (``s%i.raw 1 40 1``). A lone ``%`` in a name is not one."""
    words = data_name.split()
    return bool(words) and (_PATTERN.search(words[0]) is not None or (len(words) > 1 and "%" in words[0]))


def _inflate(data_path: Path, offset: int, limit: int | None, n_bytes: int) -> bytearray:
    """Decompress zlib or gzip data, never producing more than ``n_bytes + 1`` bytes."""
    inflater = zlib.decompressobj(47)  # 32 + 15: zlib or gzip, detected from the stream's header
    out = bytearray()
    remaining = limit
    with data_path.open("rb") as fh:
        fh.seek(offset)
        while not inflater.eof:
            chunk = fh.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            while chunk and not inflater.eof:
                try:
                    out += inflater.decompress(chunk, n_bytes + 1 - len(out))
                except zlib.error as exc:
                    raise CTReadError(data_path, f"compressed data is corrupt ({exc})") from None
                if len(out) > n_bytes:
                    raise CTReadError(
                        data_path,
                        f"decompresses to more than the {n_bytes:,} bytes the header describes; header and "
                        "data do not match",
                    )
                chunk = inflater.unconsumed_tail
    if not inflater.eof:
        raise CTReadError(data_path, "compressed data is truncated (the stream ends early)")
    return out


def read_mhd(path: str | Path, *, mmap: bool = False) -> tuple[NDArray[Any], Geometry]:
    """Read a MetaImage; returns the (index, row, col) array and its geometry.

    With ``mmap=True`` an uncompressed data file is memory-mapped read-only instead of loaded. What the
    header claims is checked against lungtk's voxel limit and the data file's size before anything is
    allocated or decompressed.
    """
    path = Path(path)
    header, header_end = read_header(path)
    geometry, shape = read_mhd_geometry(header, path)
    size = list(shape[::-1])
    channels = _integers(header, "ElementNumberOfChannels", path, 1, default=[1])[0]
    if channels != 1:
        raise CTReadError(path, f"has {channels} channels per voxel (RGB/vector); a CT volume has one")
    element = header.get("ElementType", "")
    if element not in ELEMENT_TYPES:
        raise CTReadError(
            path, f"unsupported pixel type {element or '(none)'}; supported: {', '.join(ELEMENT_TYPES)}"
        )
    big_endian = _flag(header, ("BinaryDataByteOrderMSB", "ElementByteOrderMSB"), path)
    dtype = np.dtype(("<", ">")[big_endian] + ELEMENT_TYPES[element])
    count = math.prod(shape)
    n_bytes = count * dtype.itemsize
    compressed = _flag(header, ("CompressedData",), path)
    data_path, data_offset, data_name = _data_location(header, path, header_end)
    data_size = file_size(data_path)
    skip = _integers(header, "HeaderSize", path, 1, default=[0])[0]
    if skip < -1:
        raise CTReadError(path, f"MetaImage HeaderSize must be -1 or more, got {skip}")
    if skip == -1 and not compressed:  # -1: the data is the last n_bytes of the file
        data_offset = max(data_size - n_bytes, data_offset)
    elif skip > 0:
        data_offset += skip
    available = data_size - data_offset
    if compressed:
        limit = None
        if "CompressedDataSize" in header:
            limit = _integers(header, "CompressedDataSize", path, 1)[0]
            if limit < 1:
                raise CTReadError(path, f"MetaImage CompressedDataSize must be positive, got {limit}")
            if limit > available:
                raise CTReadError(
                    data_path,
                    f"is truncated: {max(available, 0):,} bytes of compressed data, but CompressedDataSize "
                    f"is {limit:,}",
                )
        check_available(data_path, n_bytes, available if limit is None else limit, compressed="zlib")
        raw = _inflate(data_path, data_offset, limit, n_bytes)
        if len(raw) != n_bytes:
            raise CTReadError(
                data_path,
                f"decompresses to {len(raw):,} bytes; the header needs {n_bytes:,} (DimSize {size})",
            )
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    else:
        if available < n_bytes:
            raise CTReadError(
                data_path,
                f"is truncated: {max(available, 0)} bytes, but DimSize {size} of {element} needs {n_bytes}",
            )
        if available > n_bytes and data_name != "LOCAL" and skip == 0:
            raise CTReadError(
                data_path,
                f"holds {available} bytes but the header describes {n_bytes} (DimSize {size}, "
                f"{element}); header and data do not match",
            )
        try:
            if mmap:
                array = np.memmap(data_path, dtype=dtype, mode="r", offset=data_offset, shape=shape)
            else:
                with data_path.open("rb") as fh:
                    fh.seek(data_offset)
                    array = np.fromfile(fh, dtype=dtype, count=count).reshape(shape)
        except OSError as exc:
            raise CTReadError(data_path, f"cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:  # the file shrank between the size check and the read
            raise CTReadError(data_path, f"cannot be read: {exc}") from None
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("<"))
    return array, geometry


def write_mhd(path: str | Path, array: NDArray[Any], geometry: Geometry, *, compress: bool = False) -> Path:
    """Write ``array`` (index, row, col) as ``path`` (.mhd) plus ``<stem>.raw`` (or ``.zraw``), atomically.

    Where ``<stem>.raw`` could not be named in the header as it is (a ``%``, which MetaIO reads as a
    multi-file pattern; non-ASCII or control characters; spaces at its ends) the data follows the header
    inside the .mhd (``ElementDataFile = LOCAL``), which every MetaImage reader accepts."""
    path = Path(path)
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"write_mhd writes .mhd files, got {path.name}")
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"write_mhd needs a 3D array, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    key = array.dtype.str[1:]
    if key not in _TYPE_OF_DTYPE:
        raise ValueError(f"cannot write pixel type {array.dtype} to MetaImage")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    if compress:
        data = zlib.compress(data, 1)
    data_name = path.stem + (".zraw" if compress else ".raw")
    local = not _plain_data_name(data_name)  # the data goes inside the .mhd itself (valid MetaImage)
    fmt = lambda values: " ".join(repr(float(v)) for v in values)  # noqa: E731
    lines = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        f"CompressedData = {compress}",
        *([f"CompressedDataSize = {len(data)}"] if compress else []),
        f"TransformMatrix = {fmt(geometry.direction.T.reshape(-1))}",
        f"Offset = {fmt(geometry.origin)}",
        "CenterOfRotation = 0 0 0",
        f"ElementSpacing = {fmt(geometry.spacing)}",
        f"DimSize = {' '.join(str(n) for n in array.shape[::-1])}",
        f"ElementType = {_TYPE_OF_DTYPE[key]}",
        f"ElementDataFile = {'LOCAL' if local else data_name}",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii")
    with writing(path):  # a failure on the data file is reported for the image the caller named
        if local:
            with atomic_path(path) as tmp:
                tmp.write_bytes(header + data)
        else:
            with atomic_path(path.parent / data_name) as tmp:
                tmp.write_bytes(data)
            with atomic_path(path) as tmp:
                tmp.write_bytes(header)
    return path


def _plain_data_name(name: str) -> bool:
    """Whether ``name`` survives as an ElementDataFile value for lungtk and ITK alike: ASCII (the header
    is), no "%" (MetaIO takes it for a multi-file pattern), no whitespace at the ends or control
    characters (the header line would change it), and not one of MetaIO's keywords."""
    return (
        name.isascii()
        and name.isprintable()
        and "%" not in name
        and name == name.strip()
        and name.split()[0] not in ("LIST", "LOCAL")
    )
