"""Indexes of the public data sets' on-disk layouts: LUNA16, LNDb and MSD Task06_Lung, with patient splits.

>>> from lungtk.ct_io.datasets import open_dataset, split_scans
>>> luna = open_dataset("/data/LUNA16")
>>> splits = split_scans(luna, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lungtk.core import LungtkError
from lungtk.ct_io.datasets.lndb import load_lndb
from lungtk.ct_io.datasets.luna16 import LUNG_MASKS, lidc_patients, load_luna16, match_candidates
from lungtk.ct_io.datasets.msd import load_msd
from lungtk.ct_io.datasets.records import Annotation, Candidates, DatasetIndex, ScanEntry
from lungtk.ct_io.datasets.splits import patient_folds, split_patients, split_scans

LOADERS: dict[str, Callable[..., DatasetIndex]] = {"luna16": load_luna16, "lndb": load_lndb, "msd": load_msd}


def detect_layout(root: str | os.PathLike[str]) -> str:
    """``luna16``, ``lndb`` or ``msd`` from the files a folder holds."""
    root = Path(root)
    if not root.is_dir():
        raise LungtkError(f"{root}: not a folder")
    if (root / "dataset.json").is_file():
        return "msd"
    if next(root.rglob("trainNodules*.csv"), None) or next(root.rglob("LNDb-*.mhd"), None):
        return "lndb"
    if (
        any(p.name.lower().startswith("subset") or p.name == LUNG_MASKS for p in root.iterdir())
        or (root / "phantom.json").is_file()
        or next(root.rglob("annotations.csv"), None)
    ):
        return "luna16"
    raise LungtkError(
        f"{root}: not a LUNA16 (subset*/, annotations.csv), LNDb (LNDb-*.mhd, trainNodules.csv) or MSD "
        "(dataset.json) folder",
        option="--layout",
        advice="name the layout with --layout",
        otherwise="give the data set's top folder",
    )


def open_dataset(root: str | os.PathLike[str], layout: str = "auto", **options: object) -> DatasetIndex:
    """Index a data-set folder; ``layout`` is auto, luna16, lndb or msd."""
    layout = detect_layout(root) if layout == "auto" else layout
    if layout not in LOADERS:
        raise LungtkError(f"unknown data-set layout {layout!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[layout](root, **options)


__all__ = [
    "Annotation",
    "Candidates",
    "DatasetIndex",
    "ScanEntry",
    "detect_layout",
    "lidc_patients",
    "load_lndb",
    "load_luna16",
    "load_msd",
    "match_candidates",
    "open_dataset",
    "patient_folds",
    "split_patients",
    "split_scans",
]
