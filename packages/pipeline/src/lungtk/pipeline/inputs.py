"""Which scans a pipeline run covers: files, folders of scans, DICOM series folders and list files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.io.formats import series_uid_of
from lungtk.ct_io.points import find_scans

LIST_SUFFIXES = (".txt", ".lst", ".list")
MAX_LIST_DEPTH = 32  # lists naming lists naming lists...


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


def _from_list(path: Path) -> list[tuple[int, Path]]:
    """(line number, path) of each entry of a list file (relative entries are relative to the list)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM (Windows editors) is not a path
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise LungtkError(f"{path}: cannot read the scan list ({reason})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if any(ord(c) < 32 for c in text):
            raise LungtkError(
                f"{path}: line {number} holds control characters, not a path; give one scan per line"
            )
        entry = Path(text).expanduser()
        entries.append((number, entry if entry.is_absolute() else path.parent / entry))
    return entries


def _expand(
    arguments: Sequence[tuple[str, Path]], found: list[tuple[str, Path]], lists: tuple[Path, ...]
) -> None:
    """Add the scans ``arguments`` name to ``found``; ``lists`` are the list files being read (a list
    met again is a cycle). Each argument comes with where it was named, for messages."""
    for named_at, path in arguments:
        if path.is_file() and path.name.lower().endswith(LIST_SUFFIXES):
            key = _key(path)
            if key in lists:
                if key == lists[-1]:
                    raise LungtkError(f"{named_at} names the list itself ({path}); remove that line")
                chain = " -> ".join(p.name for p in (*lists[lists.index(key) :], key))
                raise LungtkError(
                    f"{named_at} names {path}, which is already being read: the scan lists form a cycle "
                    f"({chain}); remove that line"
                )
            if len(lists) >= MAX_LIST_DEPTH:
                raise LungtkError(f"{named_at}: scan lists nested over {MAX_LIST_DEPTH} deep; flatten them")
            entries = [(f"{path}: line {n}", p) for n, p in _from_list(path)]
            _expand(entries, found, (*lists, key))
        elif path.is_dir():
            scans = find_scans(path)
            if scans:
                found.extend(scans.items())
            else:  # a DICOM series folder (read_ct says so clearly if it is not one)
                found.append((path.name if path.name not in ("", ".", "..") else _key(path).name, path))
        else:
            found.append((series_uid_of(path), path))


def expand_scans(arguments: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(series UID, path) for every scan named: a scan file, a folder of scans (searched recursively), a
    DICOM series folder, or a text file listing one of those per line (relative to the list; lists may
    name lists, but not in a cycle). A path that does not exist is kept, so the run reports it with the
    other unreadable scans."""
    found: list[tuple[str, Path]] = []
    _expand([(f"argument {a!r}", Path(a)) for a in arguments], found, ())
    seen: dict[str, Path] = {}
    for uid, path in found:
        if uid in seen and _key(seen[uid]) != _key(path):
            raise LungtkError(
                f"two scans share the series UID {uid!r}: {seen[uid]} and {path}; run them separately"
            )
        seen.setdefault(uid, path)
    if not seen:
        raise LungtkError("no scans given; pass scan files, folders of scans or a list file")
    return list(seen.items())
