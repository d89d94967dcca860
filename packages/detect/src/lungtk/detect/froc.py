"""FROC analysis by the LUNA16 rules (Setio et al., Medical Image Analysis 42, 2017).

- A mark hits a nodule when it lies within the nodule's radius of its centre
  (``lungtk.core.labels.within_radius``).
- A nodule hit by several marks counts once, at the highest probability; the other hits are not false
  positives.
- Marks on excluded findings (annotations_excluded.csv: non-nodules, nodules < 3 mm, nodules marked by
  fewer than 3 readers) are ignored; an excluded finding without a diameter gets 10 mm.
- Only each scan's 100 most probable marks count.
- Sensitivity at an average of r false positives per scan is the best sensitivity any threshold reaches
  with at most r; the CPM is its mean over r = 1/8, 1/4, 1/2, 1, 2, 4 and 8.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lungtk.core import LungtkError, validate
from lungtk.core.labels import (
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_PROBABILITY,
    LUNA16_XYZ,
    within_radius_matrix,
)
from lungtk.core.tables import Row, read_rows, read_table

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MAX_MARKS_PER_SCAN = 100
EXCLUDED_DEFAULT_DIAMETER_MM = 10.0


def _xyz(xyz: object, what: str) -> tuple[float, float, float]:
    values = list(xyz) if isinstance(xyz, Iterable) and not isinstance(xyz, str) else []
    if len(values) != 3:
        raise LungtkError(f"{what}: a centre is 3 coordinates (x, y, z), got {xyz!r}")
    return tuple(validate.coordinate(v, f"{what} {c}") for c, v in zip("xyz", values, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Mark:
    """A detector's mark: a point (patient mm) and its probability (0 to 1)."""

    uid: str
    xyz: tuple[float, float, float]
    probability: float

    def __post_init__(self) -> None:
        what = f"mark on {self.uid!r}"
        if not isinstance(self.uid, str) or not self.uid:
            raise LungtkError(f"{what}: no seriesuid")
        object.__setattr__(self, "xyz", _xyz(self.xyz, what))
        object.__setattr__(self, "probability", validate.probability(self.probability, f"{what} probability"))


@dataclass(frozen=True)
class Lesion:
    """A nodule (or an excluded finding) to hit: its centre (patient mm) and diameter. An excluded
    finding may have a diameter <= 0, meaning none was measured."""

    uid: str
    xyz: tuple[float, float, float]
    diameter_mm: float

    def __post_init__(self) -> None:
        what = f"finding on {self.uid!r}"
        if not isinstance(self.uid, str) or not self.uid:
            raise LungtkError(f"{what}: no seriesuid")
        object.__setattr__(self, "xyz", _xyz(self.xyz, what))
        diameter = validate.in_range(
            self.diameter_mm, f"{what} diameter_mm", high=validate.MAX_SIZE_MM, expected="a diameter in mm"
        )
        object.__setattr__(self, "diameter_mm", diameter)


@dataclass
class FrocResult:
    fp_per_scan: NDArray[np.float64]  # the curve, one point per threshold, increasing
    sensitivity: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    sensitivity_at: dict[float, float]
    cpm: float
    scans: int
    nodules: int
    detected: int  # nodules hit by any counted mark
    false_positives: int

    def as_dict(self) -> dict[str, object]:
        return {
            "scans": self.scans,
            "nodules": self.nodules,
            "detected": self.detected,
            "false_positives": self.false_positives,
            "sensitivity_at_fp_per_scan": {str(k): round(v, 6) for k, v in self.sensitivity_at.items()},
            "cpm": round(self.cpm, 6),
        }


def _hits(xyz: NDArray[np.float64], lesions: list[Lesion]) -> NDArray[np.bool_]:
    """(marks, lesions): which lesion each mark hits."""
    return within_radius_matrix(xyz, [e.xyz for e in lesions], [e.diameter_mm for e in lesions])


def froc(
    marks: Iterable[Mark],
    nodules: Iterable[Lesion],
    excluded: Iterable[Lesion] = (),
    scans: Iterable[str] | None = None,
    *,
    max_marks: int = MAX_MARKS_PER_SCAN,
) -> FrocResult:
    """The FROC curve and CPM. ``scans`` are the evaluated scans (default: every scan that has marks or
    nodules); marks on other scans are an error, since they could not be counted fairly."""
    marks, nodules = list(marks), list(nodules)
    unmeasured = next((n for n in nodules if n.diameter_mm <= 0), None)
    if unmeasured is not None:
        raise LungtkError(
            f"nodule on {unmeasured.uid} at {unmeasured.xyz}: diameter {unmeasured.diameter_mm:g} mm; a "
            "nodule to find needs a positive diameter",
            option="--excluded",
            advice="findings without one belong in --excluded",
            otherwise="findings without one belong in the excluded findings",
        )
    max_marks = validate.count(max_marks, "max_marks")
    excluded = [
        Lesion(e.uid, e.xyz, e.diameter_mm if e.diameter_mm > 0 else EXCLUDED_DEFAULT_DIAMETER_MM)
        for e in excluded
    ]
    scan_set = set(scans) if scans is not None else {m.uid for m in marks} | {n.uid for n in nodules}
    stray = sorted({m.uid for m in marks} - scan_set)
    if stray:
        raise LungtkError(f"findings name {len(stray)} scan(s) outside the evaluated set, e.g. {stray[0]}")
    if not scan_set:
        raise LungtkError("nothing to evaluate: no scans, findings or annotations")
    by_scan: dict[str, list[Mark]] = {}
    for mark in marks:
        by_scan.setdefault(mark.uid, []).append(mark)
    nodules_of: dict[str, list[int]] = {}
    for i, n in enumerate(nodules):
        nodules_of.setdefault(n.uid, []).append(i)
    excluded_of: dict[str, list[Lesion]] = {}
    for e in excluded:
        excluded_of.setdefault(e.uid, []).append(e)

    best = np.full(len(nodules), -np.inf)  # the highest probability of a mark on each nodule
    fp_probabilities = []
    for uid, scan_marks in by_scan.items():
        kept = sorted(scan_marks, key=lambda m: -m.probability)[:max_marks]
        xyz = np.array([m.xyz for m in kept], dtype=np.float64)
        probability = np.array([m.probability for m in kept], dtype=np.float64)
        local = nodules_of.get(uid, [])
        hits = _hits(xyz, [nodules[i] for i in local])
        if local:
            on_nodule = np.where(hits, probability[:, None], -np.inf).max(axis=0)
            best[local] = np.maximum(best[local], on_nodule)
        on_excluded = _hits(xyz, excluded_of.get(uid, [])).any(axis=1)
        fp_probabilities.extend(probability[~hits.any(axis=1) & ~on_excluded].tolist())

    tp = np.sort(best[np.isfinite(best)])[::-1]
    fp = np.sort(np.asarray(fp_probabilities, dtype=float))[::-1]
    thresholds = np.unique(np.concatenate([tp, fp]))[::-1]
    n_tp = np.searchsorted(-tp, -thresholds, side="right")  # marks with probability >= threshold
    n_fp = np.searchsorted(-fp, -thresholds, side="right")
    total = max(len(nodules), 1)
    fps = n_fp / len(scan_set)
    sens = n_tp / total
    sensitivity_at = {}
    for rate in FP_RATES:
        within = sens[fps <= rate + 1e-12]
        sensitivity_at[rate] = float(within.max()) if len(within) else 0.0
    return FrocResult(
        fps,
        sens,
        thresholds,
        sensitivity_at,
        float(np.mean(list(sensitivity_at.values()))),
        len(scan_set),
        len(nodules),
        len(tp),
        len(fp),
    )


def _uid(row: Row) -> str:
    return row.text(LUNA16_ID)


def _centre(row: Row) -> tuple[float, float, float]:
    return tuple(row.number(c, validate.coordinate) for c in LUNA16_XYZ)  # type: ignore[return-value]


def read_marks(path: str | os.PathLike[str]) -> list[Mark]:
    """A detector's marks (``seriesuid,coordX,coordY,coordZ,probability``): finite coordinates and
    probabilities from 0 to 1, each bad cell named by file, line and column."""
    rows = read_table(path, (LUNA16_ID, *LUNA16_XYZ, LUNA16_PROBABILITY))
    return [Mark(_uid(r), _centre(r), r.number(LUNA16_PROBABILITY, validate.probability)) for r in rows]


def _diameter(value: object, what: str) -> float:
    return validate.positive(value, what, limit=validate.MAX_SIZE_MM)


def _excluded_diameter(value: object, what: str) -> float:
    # annotations_excluded.csv writes -1 where a finding has no diameter
    return validate.in_range(
        value, what, high=validate.MAX_SIZE_MM, expected=f"a diameter in mm up to {validate.MAX_SIZE_MM:g}"
    )


def read_lesions(path: str | os.PathLike[str], *, excluded: bool = False) -> list[Lesion]:
    """Nodules (``seriesuid,coordX,coordY,coordZ,diameter_mm``) with positive diameters; with
    ``excluded`` (annotations_excluded.csv) a diameter <= 0 (LUNA16 writes -1) or an empty cell means
    none was measured."""
    rows = read_table(path, (LUNA16_ID, *LUNA16_XYZ, LUNA16_DIAMETER))
    if excluded:
        return [
            Lesion(_uid(r), _centre(r), r.optional(LUNA16_DIAMETER, _excluded_diameter) or -1.0) for r in rows
        ]
    return [Lesion(_uid(r), _centre(r), r.number(LUNA16_DIAMETER, _diameter)) for r in rows]


def read_seriesuids(path: str | os.PathLike[str]) -> list[str]:
    """One uid per line (LUNA16's seriesuids.csv), or a CSV with a ``seriesuid`` column."""
    path = Path(path)
    if path.is_dir():
        raise LungtkError(f"{path}: is a folder; give the file of series UIDs")
    if not path.is_file():
        raise LungtkError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LungtkError(f"{path}: not a UTF-8 text file of series UIDs") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].split(",")[0].strip() == LUNA16_ID:
        uids = [r[LUNA16_ID] for r in read_rows(path, (LUNA16_ID,)) if r[LUNA16_ID]]
    else:
        uids = [line.split(",")[0].strip() for line in lines if line.split(",")[0].strip()]
    if not uids:
        raise LungtkError(f"{path}: lists no series UIDs; give one per line")
    return uids


def plot_froc(result: FrocResult, path: str | os.PathLike[str], title: str = "FROC") -> Path:
    """The FROC curve on a log FP axis (1/8 to 8), with the seven operating points; PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lungtk.core import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    fps = np.concatenate([[1e-3], result.fp_per_scan])
    sens = np.concatenate([[0.0], result.sensitivity])
    ax.step(np.maximum(fps, 1e-3), sens, where="post", color="tab:blue", label=f"CPM {result.cpm:.3f}")
    ax.plot(list(result.sensitivity_at), list(result.sensitivity_at.values()), "o", color="tab:red")
    ax.set_xscale("log", base=2)
    ax.set_xlim(0.125, 8)
    ax.set_xticks(FP_RATES, [str(r) for r in FP_RATES])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("average false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{title} ({result.nodules} nodules, {result.scans} scans)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
