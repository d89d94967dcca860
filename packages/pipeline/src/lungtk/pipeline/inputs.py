"""Which scans a pipeline run covers: files, folders of scans, DICOM series folders and list files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.io.formats import series_uid_of
from lungtk.ct_io.points import find_scans

LIST_SUFFIXES = (".txt", ".lst", ".list")


def _from_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LungtkError(f"{path}: cannot read the scan list ({exc})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def expand_scans(arguments: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(series UID, path) for every scan named: a scan file, a folder of scans (searched recursively), a
    DICOM series folder, or a text file listing one of those per line (relative to the list). A path that
    does not exist is kept, so the run reports it with the other unreadable scans."""
    found: list[tuple[str, Path]] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_file() and path.name.lower().endswith(LIST_SUFFIXES):
            found.extend(expand_scans(_from_list(path)))
        elif path.is_dir():
            scans = find_scans(path)
            if scans:
                found.extend(scans.items())
            else:  # a DICOM series folder (read_ct says so clearly if it is not one)
                found.append((path.name, path))
        else:
            found.append((series_uid_of(path), path))
    seen: dict[str, Path] = {}
    for uid, path in found:
        if uid in seen and seen[uid].resolve() != path.resolve():
            raise LungtkError(
                f"two scans share the series UID {uid!r}: {seen[uid]} and {path}; run them separately"
            )
        seen.setdefault(uid, path)
    if not seen:
        raise LungtkError("no scans given; pass scan files, folders of scans or a list file")
    return list(seen.items())
