"""What training reads from a data set: each scan's image, its nodule masks (where the data set has them),
its nodules' centres and its candidates, and the patient split.

Nodule masks: MSD's ``labelsTr`` and LNDb's per-reader ``masks/`` (a voxel is nodule when any reader
marked it); a LUNA16 folder has none of its own (its ``seg-lungs-LUNA16`` are lung masks), so a
``masks/<seriesuid>.mhd`` beside ``subset*/`` is used where present (lungtk phantoms write them), else
targets are grown from annotations.csv (:mod:`lungtk.train.data.targets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lungtk.core import LungtkError
from lungtk.core.labels import (
    MALIGNANCY,
    NODULE,
    PATHOLOGY,
    TASK_LABELS,
    TEXTURE,
    TEXTURES,
    texture_of_rating,
)
from lungtk.ct_io import SCAN_SUFFIXES
from lungtk.ct_io.cache import VolumeCache
from lungtk.ct_io.datasets import Annotation, DatasetIndex, patient_folds, split_scans
from lungtk.train.data.targets import Piece, grow_piece

MASKS_DIR = "masks"


@dataclass
class ScanRecord:
    """One training or validation scan, with everything a patch needs except the voxels."""

    uid: str
    image: Path
    shape: tuple[int, int, int]
    spacing_irc: tuple[float, float, float]
    masks: tuple[Path, ...] = ()
    pieces: tuple[Piece, ...] = ()
    positives: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    """Nodule centres (continuous index, row, col)."""
    diameters: np.ndarray = field(default_factory=lambda: np.zeros(0))
    positive_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Per nodule, its class for ``positive_label`` (-1: unknown); empty when not asked for."""
    candidates: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    candidate_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def has_targets(self) -> bool:
        return bool(self.masks or self.pieces)


def nodule_masks(index: DatasetIndex, uid: str) -> tuple[Path, ...]:
    scan = index.scan(uid)
    if index.name != "luna16":
        return tuple(scan.labels)
    folder = index.root / MASKS_DIR
    for suffix in SCAN_SUFFIXES:
        path = folder / f"{uid}{suffix}"
        if path.is_file():
            return (path,)
    return ()


def make_splits(index: DatasetIndex, config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Train and validation scan uids, split by patient (``fold`` -1: by ``val_fraction``; else fold k)."""
    on_disk = index.on_disk()
    if not on_disk:
        raise LungtkError(
            f"{index.root}: no scans found ({index.name} layout, {len(index)} scan(s) named in its tables, "
            "none on disk); point --data at a folder holding the scans"
        )
    fold = int(config["fold"])
    if fold < 0:
        fraction = float(config["val_fraction"])
        if fraction <= 0 or len({s.patient for s in on_disk}) < 2:
            return {"train": sorted(s.uid for s in on_disk), "val": []}
        splits = split_scans(index, {"train": 1 - fraction, "val": fraction}, seed=int(config["split_seed"]))
        return {"train": sorted(splits["train"]), "val": sorted(splits["val"])}
    patients = [s.patient for s in on_disk]
    folds = (
        {p: index.folds[p] for p in patients if p in index.folds}
        if index.folds
        else patient_folds(patients, int(config["folds"]), seed=int(config["split_seed"]))
    )
    count = len(set(folds.values()))
    if fold >= count:
        raise LungtkError(f"setting fold={fold}: {index.name} at {index.root} has folds 0..{count - 1}")
    val = sorted(s.uid for s in on_disk if folds.get(s.patient) == fold)
    return {"train": sorted(s.uid for s in on_disk if s.uid not in set(val)), "val": val}


POSITIVE_LABELS = (TEXTURE, MALIGNANCY, PATHOLOGY)


def annotation_label(annotation: Annotation, kind: str) -> int:
    """The class index of an annotation for ``kind`` (texture: lungtk.core.labels.TEXTURES; malignancy:
    benign 0 / malignant 1, malignant meaning a mean rating above 3 as seed 001), -1 if unrated."""
    if kind == TEXTURE:
        return -1 if annotation.texture is None else TEXTURES.index(texture_of_rating(annotation.texture))
    if kind == MALIGNANCY:
        if annotation.malignant is not None:
            return int(annotation.malignant)
        return -1 if annotation.malignancy is None else int(annotation.malignancy > 3)
    if kind == PATHOLOGY:
        return -1 if annotation.pathology is None else TASK_LABELS[PATHOLOGY].index(annotation.pathology)
    raise LungtkError(f"setting positive_label={kind!r}: use {' or '.join(POSITIVE_LABELS)} (or empty)")


def build_records(
    index: DatasetIndex,
    uids: list[str],
    config: Mapping[str, Any],
    *,
    target: str,
    cache: VolumeCache,
    on_scan: Callable[[str], None] | None = None,
) -> list[ScanRecord]:
    """Records of ``uids``; each scan is decoded into the volume cache once (later reads map it).

    ``target`` is ``mask`` (segmentation: masks or region-grown pieces), ``label`` (classification:
    the candidates table's class) or ``none`` (the images alone: self-supervised pre-training).
    """
    mode = str(config["targets"])
    threshold = float(config["grow_threshold_hu"])
    records = []
    for uid in uids:
        entry = index.scan(uid)
        assert entry.image is not None
        ct = cache.get(entry.image)
        spacing_irc = tuple(float(v) for v in ct.geometry.spacing_irc)
        anns = [a for a in index.annotations_of(uid) if a.is_nodule]
        centres = (
            np.asarray(ct.xyz2irc([a.center_xyz for a in anns], continuous=True), dtype=float).reshape(-1, 3)
            if anns
            else np.zeros((0, 3))
        )
        record = ScanRecord(
            uid=uid,
            image=entry.image,
            shape=ct.shape,
            spacing_irc=spacing_irc,  # type: ignore[arg-type]
            positives=centres,
            diameters=np.array([a.diameter_mm for a in anns], dtype=float),
        )
        if config.get("positive_label"):
            record.positive_labels = np.array(
                [annotation_label(a, str(config["positive_label"])) for a in anns], dtype=np.int64
            )
            if config.get("labelled_only"):
                keep = record.positive_labels >= 0
                record.positives, record.diameters = record.positives[keep], record.diameters[keep]
                record.positive_labels = record.positive_labels[keep]
        if target == "none":
            pass
        elif target == "mask":
            masks = nodule_masks(index, uid) if mode in ("auto", "masks") else ()
            if masks:
                for m in masks:
                    if cache.get(m).shape != ct.shape:
                        raise LungtkError(
                            f"{m}: mask shape {cache.get(m).shape} differs from its scan {ct.shape}"
                        )
                record.masks = masks
            elif mode == "masks":
                raise LungtkError(
                    f"{index.root}: setting targets=masks, but scan {uid} has no nodule mask; use targets=auto"
                )
            else:
                pieces = [
                    grow_piece(ct.array, c, a.diameter_mm, spacing_irc, threshold)
                    for c, a in zip(centres, anns, strict=True)
                ]
                record.pieces = tuple(p for p in pieces if p is not None)
            if not len(record.positives) and record.masks and not config.get("labelled_only"):
                record.positives = mask_positions(cache, record.masks, seed=len(records))
        elif str(config["labels"]) == NODULE:
            table = index.candidates.of_scan(uid)
            if len(table):
                record.candidates = np.asarray(
                    ct.xyz2irc(table.center_xyz, continuous=True), dtype=float
                ).reshape(-1, 3)
                record.candidate_labels = table.label.astype(np.int64)
        else:  # an annotated nodule's class; unrated nodules are left out
            classes = np.array([annotation_label(a, str(config["labels"])) for a in anns], dtype=np.int64)
            record.candidates = centres[classes >= 0]
            record.candidate_labels = classes[classes >= 0]
        records.append(record)
        if on_scan is not None:
            on_scan(uid)
    return records


def mask_positions(cache: VolumeCache, masks: tuple[Path, ...], seed: int, limit: int = 1000) -> np.ndarray:
    """Up to ``limit`` foreground voxels of a scan's masks (nnU-Net samples foreground patches the same
    way where a data set marks no centres, e.g. MSD)."""
    found = np.concatenate([np.argwhere(np.asarray(cache.get(m).array) > 0) for m in masks])
    if len(found) > limit:
        found = found[np.random.default_rng(seed).choice(len(found), limit, replace=False)]
    return found.astype(float)


def check_labels(records: list[ScanRecord], target: str, task: str, root: Path, labels: str = NODULE) -> None:
    """A clear error when the training scans hold nothing the task can learn from."""
    if target == "none":  # self-supervised: any scan will do
        return
    if target == "mask":
        if not any(r.has_targets for r in records):
            raise LungtkError(
                f"{root}: no labels for task '{task}': the training scans have no nodule masks and no "
                "annotated nodules (annotations.csv rows, LNDb trainNodules.csv, MSD labelsTr)"
            )
    else:
        present = set(np.concatenate([r.candidate_labels for r in records] or [np.zeros(0)]).tolist())
        if len(present) < 2:
            labels = labels if labels in TASK_LABELS else NODULE
            where = (
                "a candidates table (candidates.csv) with nodules (class 1) and non-nodules (class 0)"
                if labels == NODULE
                else f"annotated nodules rated for {labels} (e.g. annotations_with_malignancy.csv)"
            )
            found = ", ".join(TASK_LABELS[labels][int(c)] for c in sorted(present)) or "none"
            raise LungtkError(
                f"{root}: task '{task}' needs two classes or more to learn; the training scans have {found}: "
                f"it needs {where}"
            )
