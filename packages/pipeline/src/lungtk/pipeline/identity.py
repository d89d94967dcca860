"""What a scan on disk is, cheaply: the key ``--resume`` checks before it reuses a scan's saved results.

A scan file is known by its size, modification time (ns) and a hash of its bytes (all of a small file;
the first and last MiB and evenly spaced blocks in between of a large one); a header names its data file
(MetaImage ``ElementDataFile``, NRRD ``data file``), which is known the same way. A DICOM folder is known
by every file's name, size and modification time. A changed voxel, a rewritten or touched file, a new or
removed slice: the key differs and the scan is analysed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from lungtk.ct_io.io.header import data_files

MIB = 1 << 20
WHOLE_FILE_BYTES = 4 * MIB  # files up to this size are hashed whole
BLOCKS = 14  # blocks of BLOCK_BYTES sampled between the first and the last MiB of a larger file
BLOCK_BYTES = 64 << 10


def _digest(path: Path, size: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        if size <= WHOLE_FILE_BYTES:
            h.update(fh.read())
        else:
            offsets = [
                0,
                *(MIB + (size - 2 * MIB) * k // (BLOCKS + 1) for k in range(1, BLOCKS + 1)),
                size - MIB,
            ]
            for offset in offsets:
                fh.seek(offset)
                h.update(fh.read(MIB if offset in (0, size - MIB) else BLOCK_BYTES))
    return h.hexdigest()


def _file_key(path: Path, name: str) -> dict[str, Any]:
    stat = path.stat()
    return {
        "file": name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "blake2b": _digest(path, stat.st_size),
    }


def source_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The key of the scan at ``path`` (a file or a DICOM folder). Raises OSError when it cannot be read
    (the run then reports the scan as unreadable)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        h = hashlib.blake2b(digest_size=16)
        for p in files:
            stat = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {"folder": path.name, "files": len(files), "blake2b": h.hexdigest()}
    keys = [_file_key(path, path.name)]
    data = data_files(path)
    if data is None:  # a list or pattern of data files: the size and time of everything beside the header
        for p in sorted(p for p in path.parent.iterdir() if p.is_file() and p != path):
            stat = p.stat()
            keys.append({"file": p.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
        return {"files": keys}
    for p in data:
        keys.append(_file_key(p, p.name) if p.is_file() else {"file": p.name, "missing": True})
    return {"files": keys}
