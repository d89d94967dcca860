"""Disk caches: decode a scan once, then crop it at memory speed.

``VolumeCache`` stores each scan as a ``.npy`` array (memory-mapped on read) plus a JSON sidecar with its
geometry, keyed by the source's path, size and modification time, so an edited scan is decoded again.
``CropCache`` stores crops keyed by scan, centre and size. Every write goes to a temporary file that is
renamed into place, and the sidecar is written last, so a crash or two processes warming the same scan at
once never leave a half-written entry.

The cache lives in ``$LUNGTK_CACHE_DIR`` (default ``~/.cache/lungtk``).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core import Geometry, atomic_path, write_text
from lungtk.core.labels import PAD_HU
from lungtk.ct_io.crops import crop
from lungtk.ct_io.io.formats import read_ct
from lungtk.ct_io.volume import CTVolume

CACHE_ENV = "LUNGTK_CACHE_DIR"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lungtk"


def source_fingerprint(path: str | os.PathLike[str], series: str | None = None) -> str:
    """A key that changes when the scan's files change (path, sizes, modification times)."""
    path = Path(path).resolve()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
    else:  # an .mhd's data file sits beside it under the same stem
        files = [path, *(p for p in (path.with_suffix(".raw"), path.with_suffix(".zraw")) if p.is_file())]
    h = hashlib.sha256(f"v{FORMAT_VERSION}|{path}|{series or ''}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _map_npy(path: Path) -> NDArray[Any]:
    """Map a ``.npy`` read-only with every page mapped up front (MAP_POPULATE where the OS has it), so
    random crops cost a memory copy and no page faults; the data stays in the OS page cache."""
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered cache entry")
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mapped = mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    count = int(np.prod(shape))
    if offset + count * dtype.itemsize > len(mapped):
        raise ValueError(f"{path}: truncated cache entry")
    return np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)


@dataclass
class CacheInfo:
    root: Path
    volumes: int
    crops: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "volumes": self.volumes, "crops": self.crops, "bytes": self.bytes}


class VolumeCache:
    """Decoded scans on disk, memory-mapped on read."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / "volumes"
        self._open: dict[str, CTVolume] = {}  # volumes this process has mapped, by fingerprint
        self._recent: dict[tuple[str, str | None], tuple[tuple[int, ...], CTVolume]] = {}

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npy", self.dir / f"{key}.json"

    def _stamp(self, path: str | os.PathLike[str]) -> tuple[int, ...]:
        """Cheap change detection for the per-call fast path: size and mtime of a file and its .raw."""
        stamp: list[int] = []
        for f in (os.fspath(path), os.path.splitext(os.fspath(path))[0] + ".raw"):
            try:
                st = os.stat(f)
            except OSError:
                continue
            stamp += [st.st_size, st.st_mtime_ns, st.st_ino]
        return tuple(stamp)

    def lookup(self, path: str | os.PathLike[str], series: str | None = None) -> CTVolume | None:
        recent = self._recent.get((os.fspath(path), series))
        if recent is not None and recent[0] == self._stamp(path) and not os.path.isdir(path):
            return recent[1]
        key = source_fingerprint(path, series)
        if key in self._open:
            self._recent[(os.fspath(path), series)] = (self._stamp(path), self._open[key])
            return self._open[key]
        array_path, meta_path = self._paths(key)
        if not meta_path.is_file() or not array_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            array = _map_npy(array_path)
        except (OSError, ValueError, KeyError):  # a damaged entry is a miss; it is rewritten on warm
            return None
        if list(array.shape) != meta["shape"]:
            return None
        ct = CTVolume(array, Geometry.from_dict(meta["geometry"]), meta["series_uid"], Path(meta["source"]))
        self._open[key] = ct
        self._recent[(os.fspath(path), series)] = (self._stamp(path), ct)
        return ct

    def warm(self, path: str | os.PathLike[str], series: str | None = None) -> bool:
        """Decode ``path`` into the cache unless it is there already; True if it was decoded now."""
        if self.lookup(path, series) is not None:
            return False
        self.put(path, read_ct(path, series=series), series)
        return True

    def put(self, path: str | os.PathLike[str], ct: CTVolume, series: str | None = None) -> CTVolume:
        key = source_fingerprint(path, series)
        array_path, meta_path = self._paths(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(array_path) as tmp, tmp.open("wb") as fh:
            np.save(fh, np.ascontiguousarray(ct.array))
        meta = {
            "format": FORMAT_VERSION,
            "source": str(Path(path).resolve()),
            "series_uid": ct.series_uid,
            "shape": list(ct.shape),
            "dtype": str(ct.array.dtype),
            "geometry": ct.geometry.as_dict(),
        }
        write_text(meta_path, json.dumps(meta, indent=1))
        cached = self.lookup(path, series)
        assert cached is not None
        return cached

    def get(self, path: str | os.PathLike[str], series: str | None = None) -> CTVolume:
        """The scan as a memory-mapped volume, decoding it into the cache on first use."""
        cached = self.lookup(path, series)
        if cached is not None:
            return cached
        return self.put(path, read_ct(path, series=series), series)

    def info(self) -> CacheInfo:
        volumes = len(list(self.dir.glob("*.json"))) if self.dir.is_dir() else 0
        crops_dir = self.root / "crops"
        crops = len(list(crops_dir.glob("*.npy"))) if crops_dir.is_dir() else 0
        size = sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file()) if self.root.is_dir() else 0
        return CacheInfo(self.root, volumes, crops, size)

    def clear(self) -> int:
        """Remove every cached volume and crop; returns the bytes freed."""
        freed = self.info().bytes
        for sub in ("volumes", "crops"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
        return freed


class CropCache:
    """Crops of cached volumes, stored by (scan, centre voxel, size)."""

    def __init__(self, volumes: VolumeCache | None = None) -> None:
        self.volumes = volumes or VolumeCache()
        self.dir = self.volumes.root / "crops"

    def get(
        self,
        path: str | os.PathLike[str],
        center_xyz: ArrayLike,
        size: Sequence[int],
        pad_value: float = PAD_HU,
    ) -> NDArray[Any]:
        ct = self.volumes.get(path)
        centre = tuple(int(v) for v in ct.geometry.xyz2irc(center_xyz))
        key = hashlib.sha256(
            f"{source_fingerprint(path)}|{centre}|{tuple(size)}|{pad_value}".encode()
        ).hexdigest()[:24]
        target = self.dir / f"{key}.npy"
        if target.is_file():
            try:
                return np.load(target)
            except (OSError, ValueError):
                pass
        array = crop(ct, size=size, center_irc=centre, pad_value=pad_value).array
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp, tmp.open("wb") as fh:
            np.save(fh, array)
        return array
