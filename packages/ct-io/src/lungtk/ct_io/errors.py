"""Errors for unreadable or unusable CT input, and for outputs that cannot be written."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lungtk.core import LungtkError


class CTReadError(LungtkError):
    """A scan that cannot be read or used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str, **advice: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}", **advice)


class MultipleSeriesError(CTReadError):
    """A DICOM folder that holds several series; ``series`` maps each series UID to its slice count. The
    advice to pick one with ``--series`` is shown only by a command that has that option."""

    def __init__(self, path: str | Path, series: dict[str, int]) -> None:
        self.series = dict(series)
        listing = ", ".join(f"{uid} ({n} slices)" for uid, n in self.series.items())
        super().__init__(
            path,
            f"holds {len(self.series)} DICOM series: {listing}",
            option="--series",
            advice="pick one with --series UID",
            otherwise="move each series into a folder of its own, or write one out with "
            f"`lungtk convert image {path} OUT --series UID`",
        )


class CTWriteError(LungtkError):
    """An output file that cannot be written; the message names the target, never a temporary file."""

    def __init__(self, target: str | Path, problem: str) -> None:
        self.path = Path(target)
        self.problem = problem
        super().__init__(f"{target}: {problem}")


_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
    errno.EACCES: "permission denied; write to a folder you can write to",
    errno.EPERM: "permission denied; write to a folder you can write to",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another output path",
    errno.EISDIR: "it is a folder; name a file",
    errno.ENAMETOOLONG: "the file name is too long; choose a shorter one",
}


def describe_os_error(exc: OSError) -> str:
    """What went wrong, in words, without the temporary file name an ``OSError`` may carry."""
    advice = _ADVICE.get(exc.errno or 0)
    if advice:
        return f"cannot write: {advice}"
    reason = exc.strerror or (str(exc) if exc.filename is None and str(exc) else type(exc).__name__)
    return f"cannot write ({reason}); check the folder exists, is writable and has free space"


@contextmanager
def writing(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``target`` (often raised on its hidden temporary file) into a
    ``CTWriteError`` that names ``target``."""
    try:
        yield
    except CTWriteError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            blocker = next((p for p in Path(target).parents if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                raise CTWriteError(target, f"cannot write: {blocker} is a file, not a folder") from None
        raise CTWriteError(target, describe_os_error(exc)) from None
