"""Atomic file writes: write beside the target, then rename over it, so readers never see half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _suffixes(path: Path) -> str:
    """Keep compound suffixes (``.nii.gz``) so writers that pick a format by name still work."""
    return "".join(path.suffixes[-2:]) if path.name.endswith((".nii.gz", ".tar.gz")) else path.suffix


def _naming_target(exc: OSError, target: Path, prefix: str) -> OSError:
    """``exc`` as it would read for ``target``: an error about the hidden temporary file (or about no
    file, as a full disk's write error is) names the file the caller asked for instead."""
    names = [exc.filename, getattr(exc, "filename2", None)]
    temporary = [n for n in names if n is not None and Path(os.fsdecode(n)).name.startswith(prefix)]
    if exc.filename is not None and not temporary:
        return exc  # about another file the writer touched: its name is the right one
    if not exc.errno:
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))  # PermissionError &c.


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target`` atomically.

    On error the temporary file is removed and ``target`` is left as it was. A file-system error about the
    temporary file (a read-only folder, a full disk) names ``target``, never the temporary name.
    """
    target = Path(target)
    prefix = f".{target.name}."
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=f".tmp{_suffixes(target)}", dir=target.parent)
    except OSError as exc:
        renamed = _naming_target(exc, target, prefix)
        if renamed is exc:
            raise
        raise renamed from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions a plain open() would have.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        renamed = _naming_target(exc, target, prefix)
        if renamed is exc:
            raise
        raise renamed from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)
