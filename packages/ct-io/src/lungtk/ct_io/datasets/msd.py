"""Medical Segmentation Decathlon Task06_Lung: ``dataset.json`` naming ``imagesTr/lung_XXX.nii.gz`` with
``labelsTr/lung_XXX.nii.gz`` (tumour = 1) and the unlabelled ``imagesTs``.

The index follows dataset.json rather than globbing: the published archive also holds macOS ``._lung_*``
resource files that are not images. Each case is one patient.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.datasets.records import DatasetIndex, ScanEntry
from lungtk.ct_io.io.formats import series_uid_of
from lungtk.ct_io.scans import DuplicateScanError


def _resolve(root: Path, relative: str, index: Path) -> Path | None:
    if not isinstance(relative, str) or not relative:
        raise LungtkError(f"{index}: an entry names no file ({relative!r})")
    path = (root / relative).resolve()
    return path if path.is_file() else None


def _add(scans: dict[str, ScanEntry], entry: ScanEntry, root: Path, relative: str) -> None:
    """One entry per series UID: dataset.json naming two different files with one name is an error."""
    other = scans.get(entry.uid)
    if other is not None and other.image != entry.image:
        first = other.image or f"{root / entry.uid} (listed, not on disk)"
        raise DuplicateScanError(root, entry.uid, Path(first), entry.image or root / relative)
    scans[entry.uid] = entry


def load_msd(root: str | os.PathLike[str]) -> DatasetIndex:
    """Index an MSD task folder (Task06_Lung or any other task in the same layout)."""
    root = Path(root)
    index = root / "dataset.json"
    if not index.is_file():
        raise LungtkError(f"{root}: no dataset.json; point at the task folder (e.g. Task06_Lung)")
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LungtkError(f"{index}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "training" not in meta:
        raise LungtkError(f"{index}: has no 'training' list; is this a Decathlon dataset.json?")
    for key in ("training", "test"):
        if not isinstance(meta.get(key, []), list):
            raise LungtkError(f"{index}: '{key}' must be a list, got {type(meta[key]).__name__}")
    scans: dict[str, ScanEntry] = {}
    for item in meta.get("training", []):
        if not isinstance(item, dict) or "image" not in item:
            raise LungtkError(f"{index}: a 'training' entry has no 'image': {item!r}")
        image = _resolve(root, item["image"], index)
        label = _resolve(root, item["label"], index) if item.get("label") else None
        if image is not None and item.get("label") and label is None:  # else a scan "without nodules"
            raise LungtkError(
                f"{index}: the label {item['label']!r} of {item['image']!r} is not on disk; restore it (or "
                "remove the entry)"
            )
        uid = series_uid_of(item["image"])
        _add(scans, ScanEntry(uid, uid, image, (label,) if label else (), "training"), root, item["image"])
    for item in meta.get("test", []):
        relative = item.get("image") if isinstance(item, dict) else item
        image = _resolve(root, relative, index)
        uid = series_uid_of(relative)
        _add(scans, ScanEntry(uid, uid, image, (), "test"), root, relative)
    return DatasetIndex(str(meta.get("name") or root.name), root, scans)
