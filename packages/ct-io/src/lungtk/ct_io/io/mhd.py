"""MetaImage (.mhd + .raw, or .mha) read and written directly, without SimpleITK.

Reading the header ourselves lets a scan be memory-mapped and lets every problem (missing or truncated
data file, header/size mismatch, unsupported pixel type) be reported in one precise line.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, atomic_path
from lungtk.ct_io.errors import CTReadError

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


def read_header(path: Path) -> tuple[dict[str, str], int]:
    """Parse the ``Key = Value`` header; return it and the byte offset where it ends."""
    try:
        raw = path.read_bytes() if path.suffix.lower() == ".mhd" else _read_mha_head(path)
    except FileNotFoundError:
        raise CTReadError(path, "file not found") from None
    header: dict[str, str] = {}
    offset = 0
    for line in raw.splitlines(keepends=True):
        offset += len(line)
        text = line.decode("latin-1").strip()
        if not text:
            continue
        key, sep, value = text.partition("=")
        if not sep:
            raise CTReadError(path, f"not a MetaImage header (line {text[:40]!r} has no '=')")
        header[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    if "ElementDataFile" not in header:
        raise CTReadError(path, "MetaImage header has no ElementDataFile line")
    return header, offset


def _read_mha_head(path: Path, limit: int = 1 << 16) -> bytes:
    with path.open("rb") as fh:
        return fh.read(limit)


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
        raise CTReadError(path, f"MetaImage {key} has {len(values)} values, expected {count}")
    return values


def read_mhd_geometry(header: dict[str, str], path: Path) -> tuple[Geometry, tuple[int, int, int]]:
    """Geometry and (index, row, col) shape described by a parsed MetaImage header."""
    ndims = int(_numbers(header, "NDims", path, 1)[0])
    if ndims != 3:
        raise CTReadError(path, f"is a {ndims}D image; lungtk needs a 3D CT volume")
    size = [int(v) for v in _numbers(header, "DimSize", path, 3)]
    if min(size) < 1:
        raise CTReadError(path, f"has an empty dimension (DimSize {size})")
    spacing = _numbers(
        header, "ElementSpacing", path, 3, default=_numbers(header, "ElementSize", path, 3, default=[1, 1, 1])
    )
    origin = _numbers(
        header, "Offset", path, 3, default=_numbers(header, "Origin", path, 3, default=[0, 0, 0])
    )
    matrix = _numbers(
        header,
        "TransformMatrix",
        path,
        9,
        default=_numbers(header, "Rotation", path, 9, default=np.eye(3).reshape(-1)),
    )
    # MetaIO stores the direction of axis i in TransformMatrix[3i:3i+3], i.e. the transpose.
    try:
        geometry = Geometry(np.array(origin), np.array(spacing), np.array(matrix).reshape(3, 3).T)
    except ValueError as exc:
        raise CTReadError(path, f"invalid geometry in header: {exc}") from None
    return geometry, (size[2], size[1], size[0])


def read_mhd(path: str | Path, *, mmap: bool = False) -> tuple[NDArray[Any], Geometry]:
    """Read a MetaImage; returns the (index, row, col) array and its geometry.

    With ``mmap=True`` an uncompressed data file is memory-mapped read-only instead of loaded.
    """
    path = Path(path)
    header, header_end = read_header(path)
    geometry, shape = read_mhd_geometry(header, path)
    size = list(shape[::-1])
    channels = int(_numbers(header, "ElementNumberOfChannels", path, 1, default=[1])[0])
    if channels != 1:
        raise CTReadError(path, f"has {channels} channels per voxel (RGB/vector); a CT volume has one")
    element = header.get("ElementType", "")
    if element not in ELEMENT_TYPES:
        raise CTReadError(
            path, f"unsupported pixel type {element or '(none)'}; supported: {', '.join(ELEMENT_TYPES)}"
        )
    big_endian = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")) == "True"
    dtype = np.dtype(("<", ">")[big_endian] + ELEMENT_TYPES[element])
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    data_name = header["ElementDataFile"]
    compressed = header.get("CompressedData", "False") == "True"
    if data_name == "LOCAL":
        data_path, data_offset = path, header_end
    else:
        if data_name.split()[0] == "LIST" or "%" in data_name:
            raise CTReadError(path, f"multi-file MetaImage data ({data_name!r}) is not supported")
        data_path, data_offset = path.parent / data_name, 0
        if not data_path.is_file():
            raise CTReadError(path, f"its data file {data_path.name} is missing (expected beside the header)")
    available = data_path.stat().st_size - data_offset
    if compressed:
        with data_path.open("rb") as fh:
            fh.seek(data_offset)
            try:
                raw = zlib.decompress(fh.read())
            except zlib.error as exc:
                raise CTReadError(data_path, f"compressed data is corrupt or truncated ({exc})") from None
        if len(raw) != n_bytes:
            raise CTReadError(data_path, f"decompresses to {len(raw)} bytes; the header needs {n_bytes}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    else:
        if available < n_bytes:
            raise CTReadError(
                data_path,
                f"is truncated: {available} bytes, but DimSize {size} of {element} needs {n_bytes}",
            )
        if available > n_bytes and data_name != "LOCAL":
            raise CTReadError(
                data_path,
                f"holds {available} bytes but the header describes {n_bytes} (DimSize {size}, "
                f"{element}); header and data do not match",
            )
        if mmap:
            array = np.memmap(data_path, dtype=dtype, mode="r", offset=data_offset, shape=shape)
        else:
            with data_path.open("rb") as fh:
                fh.seek(data_offset)
                array = np.fromfile(fh, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("<"))
    return array, geometry


def write_mhd(path: str | Path, array: NDArray[Any], geometry: Geometry, *, compress: bool = False) -> Path:
    """Write ``array`` (index, row, col) as ``path`` (.mhd) plus ``<stem>.raw`` (or ``.zraw``), atomically."""
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
        f"ElementDataFile = {data_name}",
    ]
    with atomic_path(path.parent / data_name) as tmp:
        tmp.write_bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
