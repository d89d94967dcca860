"""Sanity limits checked on a header *before* any voxel is allocated or decompressed.

A header is a claim. A 1 KB file can claim 2000^3 voxels, and a reader that believes it allocates 16 GB
before it finds out that the data is not there. Every reader checks what a header claims against

- a bound on the number of voxels (``$LUNGTK_MAX_VOXELS``, default 2^31: a 1024 x 1024 x 2048 volume,
  several times any chest CT), and
- the bytes the file can hold: raw data must be at least as long as the voxels it claims, and deflate
  (zlib / gzip) cannot expand data more than about 1032-fold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.errors import CTReadError

MAX_VOXELS_ENV = "LUNGTK_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 2**31
# The most deflate can expand: 258 bytes from a 2-bit code, with block overhead ~1032:1. Rounded up.
DEFLATE_MAX_RATIO = 1040


def max_voxels() -> int:
    """The most voxels a scan may claim (``$LUNGTK_MAX_VOXELS``, default 2^31)."""
    text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise LungtkError(
            f"{MAX_VOXELS_ENV}={text!r} is not a positive whole number of voxels; fix or unset it"
        )
    return value


def check_voxels(path: str | os.PathLike[str], sizes: Sequence[int], what: str = "the header") -> int:
    """The number of voxels ``sizes`` describe, or a ``CTReadError`` if there are too many."""
    count = math.prod(int(n) for n in sizes)
    limit = max_voxels()
    if count > limit:
        shown = " x ".join(str(int(n)) for n in sizes)
        raise CTReadError(
            path,
            f"{what} claims {shown} = {count:,} voxels, more than lungtk's limit of {limit:,}; the header is "
            f"probably damaged (if the scan really is this large, raise {MAX_VOXELS_ENV})",
        )
    return count


def check_available(
    path: str | os.PathLike[str], needed: int, available: int, *, compressed: str | None = None
) -> None:
    """Raise unless ``available`` bytes (on disk, after the header) can hold ``needed`` decoded bytes.

    ``compressed`` names the encoding (``zlib``, ``gzip``) when the bytes are deflate-compressed; other
    compressions (bzip2) are not bounded here.
    """
    available = max(int(available), 0)
    if compressed is None:
        if available < needed:
            raise CTReadError(
                path, f"is truncated: {available:,} bytes of data, but the header describes {needed:,}"
            )
        return
    if available * DEFLATE_MAX_RATIO < needed:
        raise CTReadError(
            path,
            f"holds {available:,} bytes of {compressed} data, which cannot decompress to the {needed:,} bytes "
            "the header describes; the file is truncated or the header is wrong",
        )


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CTReadError(path, f"cannot be read ({exc.strerror or exc})") from None
