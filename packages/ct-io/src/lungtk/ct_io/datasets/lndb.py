"""LNDb on disk: ``data0..5/LNDb-XXXX.mhd``, per-reader masks ``masks/LNDb-XXXX_radR.mhd`` (voxels hold the
reader's FindingID), and ``trainNodules.csv`` (one row per reader and finding:
LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text), plus trainFleischner.csv and trainFolds.csv.

LNDb holds one CT per patient, so the patient is the LNDbID.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from lungtk.core import LungtkError, validate
from lungtk.core.results import equivalent_diameter as _sphere_diameter
from lungtk.core.tables import MISSING, read_table
from lungtk.ct_io.datasets.records import Annotation, DatasetIndex, ScanEntry
from lungtk.ct_io.scans import DuplicateScanError

NODULES = "trainNodules.csv"
FLEISCHNER = "trainFleischner.csv"
FOLDS = "trainFolds.csv"
_CT_NAME = re.compile(r"^LNDb-(\d+)\.mhd$", re.IGNORECASE)
_MASK_NAME = re.compile(r"^LNDb-(\d+)_rad(\d+)\.mhd$", re.IGNORECASE)
MERGE_DISTANCE_MM = 3.0


def scan_uid(lndb_id: int | str) -> str:
    return f"LNDb-{int(lndb_id):04d}"


def equivalent_diameter(volume_mm3: float) -> float:
    """Diameter of the sphere of that volume (0 for a missing, negative volume)."""
    return _sphere_diameter(max(volume_mm3, 0.0))


def _find(root: Path, name: str) -> Path | None:
    return next(iter(sorted(root.rglob(name))), None)


def read_reader_findings(path: str | os.PathLike[str]) -> list[Annotation]:
    """One annotation per reader and finding, as trainNodules.csv lists them."""
    path = Path(path)
    rows = read_table(path, ("LNDbID", "RadID", "FindingID", "x", "y", "z", "Nodule", "Volume", "Text"))
    found = []
    for row in rows:
        volume = row.optional("Volume", validate.non_negative) or 0.0
        nodule = row.number("Nodule", _flag) >= 1
        texture = row.optional("Text", _texture)
        found.append(
            Annotation(
                uid=scan_uid(row.number("LNDbID", _lndb_id)),
                center_xyz=tuple(row.number(c, validate.coordinate) for c in "xyz"),  # type: ignore[arg-type]
                diameter_mm=equivalent_diameter(volume),
                is_nodule=nodule,
                volume_mm3=volume if nodule else None,
                texture=texture if nodule and texture else None,
                readers=(row.text("RadID"),),
                finding=row.text("FindingID"),
            )
        )
    return found


def _lndb_id(value: object, what: str) -> int:
    return validate.integer(value, what, 0, 99999)


def _flag(value: object, what: str) -> int:
    """LNDb's ``Nodule`` column: 1 for a nodule, 0 for a non-nodule finding."""
    return validate.integer(value, what, 0, 1)


def _texture(value: object, what: str) -> float:
    """LNDb's ``Text`` column: the reader's 1-5 texture rating (0 where the finding is not a nodule)."""
    return validate.in_range(value, what, 0.0, 5.0, expected="a 1-5 texture rating (0 for none)")


def merge_readers(findings: list[Annotation], distance_mm: float = MERGE_DISTANCE_MM) -> list[Annotation]:
    """Join the readers' marks of one finding, as LNDb's own scripts do.

    Two marks by different readers on the same scan are one finding when their centres are closer than the
    larger of their equivalent radii or ``distance_mm``. The merged finding is a nodule when any reader
    called it one; its centre is the mean of all marks, its volume and texture the means over the readers
    who called it a nodule, and ``readers`` lists who marked it (its agreement level is their number).
    """
    merged: list[Annotation] = []
    by_scan: dict[str, list[Annotation]] = {}
    for finding in findings:
        by_scan.setdefault(finding.uid, []).append(finding)
    for uid, marks in by_scan.items():
        groups: list[list[Annotation]] = []
        for mark in marks:
            for group in groups:
                if mark.readers[0] in {m.readers[0] for m in group}:
                    continue
                if any(_close(mark, other, distance_mm) for other in group):
                    group.append(mark)
                    break
            else:
                groups.append([mark])
        merged.extend(_combine(uid, group) for group in groups)
    return merged


def _close(a: Annotation, b: Annotation, distance_mm: float) -> bool:
    gap = math.dist(a.center_xyz, b.center_xyz)
    return gap < max(a.diameter_mm / 2, b.diameter_mm / 2, distance_mm)


def _combine(uid: str, group: list[Annotation]) -> Annotation:
    nodules = [m for m in group if m.is_nodule]
    volume = float(np.mean([m.volume_mm3 or 0.0 for m in nodules])) if nodules else None
    textures = [m.texture for m in nodules if m.texture is not None]
    return Annotation(
        uid=uid,
        center_xyz=tuple(np.mean([m.center_xyz for m in group], axis=0).tolist()),  # type: ignore[arg-type]
        diameter_mm=equivalent_diameter(volume or 0.0),
        is_nodule=bool(nodules),
        volume_mm3=volume,
        texture=float(np.mean(textures)) if textures else None,
        readers=tuple(m.readers[0] for m in group),
        finding=",".join(f"{m.readers[0]}:{m.finding}" for m in group),
    )


def _category(value: object, what: str) -> int:
    """A Fleischner category on LNDb's follow-up scale, 0 to 3."""
    return validate.integer(value, what, 0, 3)


def _folds(path: Path) -> dict[str, int]:
    folds: dict[str, int] = {}
    for row in read_table(path):
        for column, value in row.values.items():
            match = re.fullmatch(r"Fold(\d+)", column)
            if match and value and value not in MISSING:
                folds[scan_uid(row.number(column, _lndb_id))] = int(match.group(1))
    return folds


def load_lndb(root: str | os.PathLike[str], *, merge: bool = True) -> DatasetIndex:
    """Index an LNDb folder. ``merge=False`` keeps one annotation per reader mark."""
    root = Path(root)
    if not root.is_dir():
        raise LungtkError(f"{root}: not a folder; point at the LNDb folder (data0..5, masks, trainset_csv)")
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("LNDb-*.mhd")):
        if m := _CT_NAME.match(path.name):
            uid = scan_uid(m.group(1))
            if uid in images and images[uid].resolve() != path.resolve():
                raise DuplicateScanError(root, uid, images[uid], path)
            images.setdefault(uid, path)
        elif m := _MASK_NAME.match(path.name):
            masks.setdefault(scan_uid(m.group(1)), []).append(path)
    nodules_path = _find(root, NODULES)
    if nodules_path is None and not images:
        raise LungtkError(f"{root}: neither LNDb-*.mhd scans nor {NODULES}; is this an LNDb folder?")
    findings = read_reader_findings(nodules_path) if nodules_path else []
    annotations = merge_readers(findings) if merge else findings

    fleischner: dict[str, int] = {}
    if path := _find(root, FLEISCHNER):
        for row in read_table(path, ("LNDbID", "Fleischner")):
            fleischner[scan_uid(row.number("LNDbID", _lndb_id))] = int(row.number("Fleischner", _category))
    folds = _folds(path) if (path := _find(root, FOLDS)) else {}

    uids = set(images) | {a.uid for a in annotations} | set(fleischner)
    scans = {
        uid: ScanEntry(
            uid=uid,
            patient=uid,
            image=images.get(uid),
            labels=tuple(masks.get(uid, ())),
            group=images[uid].parent.name if uid in images else "",
            fleischner=fleischner.get(uid),
        )
        for uid in sorted(uids)
    }
    return DatasetIndex("lndb", root, scans, annotations, folds=folds)
