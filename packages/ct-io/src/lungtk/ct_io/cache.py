"""Disk caches: decode a scan once, then crop it at memory speed.

``VolumeCache`` stores each scan as a ``.npy`` array (memory-mapped on read) plus a JSON sidecar with its
geometry, keyed by the source's path, size and modification time, so an edited scan is decoded again.
``CropCache`` stores crops keyed by scan, centre and size. Every write goes to a temporary file that is
renamed into place, and the sidecar is written last, so a crash or two processes warming the same scan at
once never leave a half-written entry.

The cache lives in ``$LUNGTK_CACHE_DIR`` (default ``~/.cache/lungtk``). A write killed half-way leaves a
hidden temporary file (``.<name>.<random>.tmp.npy``); such files never count as entries, and one untouched
for ``STALE_SECONDS`` is removed by the next process that writes to the cache or asks for its size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core import Geometry, LungtkError, atomic_path, write_text
from lungtk.core.labels import PAD_HU
from lungtk.ct_io.crops import crop
from lungtk.ct_io.errors import CTReadError, describe_os_error
from lungtk.ct_io.io.formats import read_ct
from lungtk.ct_io.io.header import data_files
from lungtk.ct_io.volume import CTVolume

CACHE_ENV = "LUNGTK_CACHE_DIR"
FORMAT_VERSION = 1
STALE_SECONDS = 600.0  # a temporary file nobody has written to for this long belongs to a dead writer


class CacheError(LungtkError):
    """The cache folder cannot be used (not writable, a file, full disk)."""


def is_temporary(path: Path) -> bool:
    """A temporary file of an atomic write (``.<name>.<random>.tmp<suffix>``), finished or abandoned."""
    return path.name.startswith(".") and ".tmp" in path.name


def _not_a_folder(root: Path) -> CacheError | None:
    """The error for a cache folder that is a file (or lies under one), else None."""
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is None:
        return None
    return CacheError(
        f"{root}: cannot be the scan cache: {blocker} is a file, not a folder; set {CACHE_ENV} to a folder "
        "(or move that file away)"
    )


def _cache_write_error(root: Path, exc: OSError) -> CacheError:
    blocked = _not_a_folder(root)
    if blocked is not None:
        return blocked
    return CacheError(
        f"{root}: cannot write to the scan cache: {describe_os_error(exc).removeprefix('cannot write: ')}; "
        f"set {CACHE_ENV} to a writable folder with free space"
    )


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
    else:  # a header's data file: the one it names (not always <stem>.raw)
        files = [path, *(p for p in _data_of(path) if p.is_file())]
    h = hashlib.sha256(f"v{FORMAT_VERSION}|{path}|{series or ''}".encode())
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            raise CTReadError(f, "not found; check the path") from None
        except OSError as exc:  # a scan that cannot be looked at is that scan's problem, not the cache's
            raise CTReadError(f, f"cannot be read ({exc.strerror or exc})") from None
        h.update(f"|{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _data_of(path: Path) -> list[Path]:
    """The data files of a scan file: those its header names, else ``<stem>.raw`` / ``.zraw``."""
    try:
        named = data_files(path)
    except OSError:
        named = None
    if named is not None:
        return named
    return [path.with_suffix(".raw"), path.with_suffix(".zraw")]


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
        self._data_names: dict[str, tuple[tuple[int, ...], list[str]]] = {}  # header -> its data files

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.npy", self.dir / f"{key}.json"

    def _stamp(self, path: str | os.PathLike[str]) -> tuple[int, ...]:
        """Cheap change detection for the per-call fast path: size and mtime of a file and its data
        file (the header is read again only when the header itself changed)."""
        try:
            st = os.stat(path)
        except OSError:
            return ()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        known = self._data_names.get(os.fspath(path))
        if known is None or known[0] != tuple(stamp):
            known = (tuple(stamp), [os.fspath(p) for p in _data_of(Path(path))])
            self._data_names[os.fspath(path)] = known
        for f in known[1]:
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
        try:  # a damaged entry is a miss; it is rewritten on warm
            meta = json.loads(meta_path.read_text())
            array = _map_npy(array_path)
            if list(array.shape) != meta["shape"]:
                return None
            geometry = Geometry.from_dict(meta["geometry"])
            ct = CTVolume(array, geometry, str(meta["series_uid"]), Path(meta["source"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
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
        meta = {
            "format": FORMAT_VERSION,
            "source": str(Path(path).resolve()),
            "series_uid": ct.series_uid,
            "shape": list(ct.shape),
            "dtype": str(ct.array.dtype),
            "geometry": ct.geometry.as_dict(),
        }
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.remove_stale()
            with atomic_path(array_path) as tmp, tmp.open("wb") as fh:
                np.save(fh, np.ascontiguousarray(ct.array))
            write_text(meta_path, json.dumps(meta, indent=1))
        except OSError as exc:
            raise _cache_write_error(self.root, exc) from None
        cached = self.lookup(path, series)
        if cached is None:  # removed or damaged by another process between the write and the read
            raise CacheError(f"{self.root}: a cache entry vanished right after it was written; run again")
        return cached

    def get(self, path: str | os.PathLike[str], series: str | None = None) -> CTVolume:
        """The scan as a memory-mapped volume, decoding it into the cache on first use."""
        cached = self.lookup(path, series)
        if cached is not None:
            return cached
        return self.put(path, read_ct(path, series=series), series)

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [
            f
            for sub in ("volumes", "crops")
            if (self.root / sub).is_dir()
            for f in (self.root / sub).iterdir()
        ]

    def remove_stale(self, older_than: float = STALE_SECONDS) -> int:
        """Remove temporary files of writes that died (untouched for ``older_than`` seconds); returns the
        bytes freed. A temporary file a live writer is filling is newer than that and is left alone."""
        freed = 0
        now = time.time()
        for f in self._files():
            if not is_temporary(f):
                continue
            try:
                st = f.stat()
                if now - st.st_mtime >= older_than:
                    f.unlink()
                    freed += st.st_size
            except OSError:  # another process removed or renamed it first
                continue
        return freed

    def info(self) -> CacheInfo:
        """Entries and their size; temporary files of writes in progress or killed do not count (stale
        ones are removed)."""
        with contextlib.suppress(OSError):  # a read-only cache can still be inspected
            self.remove_stale()
        volumes = crops = size = 0
        for f in self._files():
            if is_temporary(f):
                continue
            try:
                bytes_ = f.stat().st_size
            except OSError:
                continue
            if f.parent.name == "volumes" and f.suffix == ".json":
                volumes += 1
            elif f.parent.name == "crops" and f.suffix == ".npy":
                crops += 1
            size += bytes_
        return CacheInfo(self.root, volumes, crops, size)

    def clear(self) -> int:
        """Remove every cached volume and crop (temporary files included); returns the bytes freed."""
        blocked = _not_a_folder(self.root)
        if blocked is not None:
            raise blocked
        freed = 0
        for f in self._files():
            with contextlib.suppress(OSError):
                freed += f.stat().st_size
        for sub in ("volumes", "crops"):
            try:
                shutil.rmtree(self.root / sub)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise CacheError(
                    f"{self.root / sub}: cannot remove the cached files ({exc.strerror or exc}); check the "
                    "folder's permissions"
                ) from None
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
                cached = np.load(target)
                if cached.shape == tuple(size):
                    return cached
            except (OSError, ValueError, EOFError):
                pass
        array = crop(ct, size=size, center_irc=centre, pad_value=pad_value).array
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp, tmp.open("wb") as fh:
                np.save(fh, array)
        except OSError as exc:
            raise _cache_write_error(self.volumes.root, exc) from None
        return array
