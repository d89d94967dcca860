"""Find the CT scans under a folder: every image file, named by series UID, and only the CTs of a data set.

A data-set folder holds label masks next to its scans, often under the same names (LUNA16's
``seg-lungs-LUNA16/<uid>.mhd``, a phantom set's ``masks/<uid>.mhd``, MSD's ``labelsTr/``, LNDb's
``masks/LNDb-XXXX_radR.mhd``). ``find_scans`` recognises the published layouts wherever it meets them:

- a folder with ``subset0..9/`` (LUNA16, and the sets ``lungtk phantom`` writes): the scans are those under
  the subsets;
- a folder with ``imagesTr/`` or ``imagesTs/`` (Medical Segmentation Decathlon): those two folders;
- anywhere: folders of masks (``seg-lungs-LUNA16``, ``masks``, ``labels``, ``labelsTr``, ``labelsTs``) below
  the folder asked for, LNDb reader masks (``LNDb-XXXX_radR.*``) and hidden files (temporary files of
  interrupted writes, macOS ``._*`` resource files) are not scans.

Two different files with one series UID are an error naming both: lungtk never picks one silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.io.formats import SCAN_SUFFIXES, series_uid_of

MASK_FOLDERS = frozenset({"seg-lungs-luna16", "masks", "labels", "labelstr", "labelsts"})
SUBSET = re.compile(r"^subset\d+$", re.IGNORECASE)
MSD_IMAGES = frozenset({"imagestr", "imagests"})
LNDB_MASK = re.compile(r"^LNDb-\d+_rad\d+\.", re.IGNORECASE)


class DuplicateScanError(LungtkError):
    """Two files under one folder name the same series UID."""

    def __init__(self, root: Path, uid: str, first: Path, second: Path) -> None:
        self.uid, self.paths = uid, (first, second)
        super().__init__(
            f"{root}: two files have the series UID {uid}: {first} and {second}; lungtk will not pick one. "
            "Remove or rename the one that is not the CT scan, or name the scan file itself"
        )


def is_scan_file(name: str) -> bool:
    """A file name lungtk reads as a scan: an image suffix, not hidden, not an LNDb reader mask."""
    return not name.startswith(".") and name.lower().endswith(SCAN_SUFFIXES) and not LNDB_MASK.match(name)


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda e: e.name)
    except PermissionError:
        raise LungtkError(
            f"{folder}: permission denied while looking for scans; fix its permissions"
        ) from None
    except OSError as exc:
        raise LungtkError(
            f"{folder}: cannot be listed while looking for scans ({exc.strerror or exc})"
        ) from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symbolic links: data sets are often linked together
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def data_set_folders(folder: Path) -> list[Path] | None:
    """The folders that hold the scans of a data set rooted at ``folder`` (LUNA16 / phantom subsets, MSD
    imagesTr / imagesTs), or None if ``folder`` is not such a root."""
    subdirs = [e for e in _listing(folder) if _is_dir(e) and not e.name.startswith(".")]
    subsets = [Path(e.path) for e in subdirs if SUBSET.match(e.name)]
    if subsets:
        return subsets
    images = [Path(e.path) for e in subdirs if e.name.lower() in MSD_IMAGES]
    return images or None


def find_scans(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Series UID -> scan path for every CT scan under ``root`` (searched recursively; see the module).

    Raises ``DuplicateScanError`` for two files with one UID, and a ``LungtkError`` for a folder that holds
    label masks but no scans.
    """
    root = Path(root)
    if not root.is_dir():
        raise LungtkError(f"{root}: not a folder; name the folder that holds the scans")
    found: dict[str, Path] = {}
    skipped_masks: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def add(path: Path) -> None:
        uid = series_uid_of(path)
        other = found.get(uid)
        if other is None:
            found[uid] = path
        elif other.resolve() != path.resolve():
            raise DuplicateScanError(root, uid, other, path)

    def walk(folder: Path) -> None:
        try:
            st = folder.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in visited:  # a link back up the tree, or a folder linked twice
            return
        visited.add((st.st_dev, st.st_ino))
        scan_folders = data_set_folders(folder)
        if scan_folders is not None:
            for sub in scan_folders:
                walk(sub)
            return
        for entry in _listing(folder):
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                if entry.name.lower() in MASK_FOLDERS:
                    skipped_masks.append(Path(entry.path))
                    continue
                walk(Path(entry.path))
            elif _is_file(entry) and entry.name.lower().endswith(SCAN_SUFFIXES):
                if LNDB_MASK.match(entry.name):
                    skipped_masks.append(Path(entry.path))
                else:
                    add(Path(entry.path))

    walk(root)
    masked = [p for p in skipped_masks if p.is_file() or any(is_scan_file(f.name) for f in p.rglob("*"))]
    if not found and masked:
        masks = ", ".join(str(p.relative_to(root)) for p in masked[:3]) + (", ..." if len(masked) > 3 else "")
        raise LungtkError(
            f"{root}: holds label masks ({masks}) but no CT scans; name the folder of the CT scans"
        )
    return found
