"""Segmentation metrics: overlap, volumes and surface distances per case, and the LNDb set over cases.

Definitions (SEED_SPECS "X. metric definitions", S0.6 for LNDb, S1 for the split-level voxel scores):

- A case compares a binary prediction ``A`` with a binary truth ``B`` on one voxel grid whose spacing is
  given in array order (index, row, col), in mm.
- Dice = 2|A∩B| / (|A| + |B|); IoU (Jaccard) = |A∩B| / |A∪B| = Dice / (2 - Dice); voxel precision =
  |A∩B| / |A|; voxel recall = |A∩B| / |B|. Volumes are voxel counts times the voxel volume, in mm^3.
- Surface of a mask: the mask minus its binary erosion by the 3D *cross* (6-neighbourhood,
  ``generate_binary_structure(ndim, 1)``); a voxel is on the surface when one of its 6 face neighbours is
  background. Outside the array counts as background, so a mask touching the array's edge has a surface
  there. (This is the convention of the widely used ``surfd`` snippet of the LNDb era; the LNDb challenge
  script itself is not available here, so parity with it is unconfirmed.)
- d(a, ∂B): Euclidean distance in mm from the centre of surface voxel ``a`` to the nearest surface-voxel
  centre of the other mask, by ``scipy.ndimage.distance_transform_edt(..., sampling=spacing)``.
  MAD (LNDb's mean average distance) = the mean of all symmetric surface distances, that is of the
  concatenation {d(a, ∂B) : a ∈ ∂A} ∪ {d(b, ∂A) : b ∈ ∂B}; HD (Hausdorff) = the larger of the two
  directed maxima.
- Empty masks: both empty -> Dice = IoU = precision = recall = 1 and MAD = HD = 0 (nothing to find, and
  nothing was found). One empty -> Dice = IoU = 0, the precision or recall whose denominator is zero is 0
  (scikit-learn's ``zero_division=0``), and MAD = HD = ``inf`` (no surface to measure to).
- The set (:func:`aggregate`): mean Dice, mean Jaccard J and J* = 1 - J over all cases (a missed case
  counts with J = 0); mean MAD and mean HD over the cases whose distances are finite, with the number of
  cases left out (one mask empty) reported beside them as ``distance_undefined``; C = Pearson correlation
  of predicted against true volumes and C* = 1 - C (``nan`` with fewer than two cases or constant
  volumes); Bias = mean |V_pred - V_true|; Std = standard deviation of V_pred - V_true (population,
  ``ddof=0``); and seed 001's split-level voxel precision, recall and F1 from true / false positive and
  false negative voxel counts summed over every case (0/0 -> 1 when no case has any voxel, else 0).

:func:`evaluate_folders` runs all this over two folders of label images paired by series UID.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from lungtk.core import LungtkError

if TYPE_CHECKING:
    from lungtk.ct_io import CTVolume

IMAGE_SUFFIXES = (".nii.gz", ".mhd", ".mha", ".nii", ".nrrd")
GEOMETRY_TOLERANCE_MM = 1e-3

__all__ = [
    "GEOMETRY_TOLERANCE_MM",
    "IMAGE_SUFFIXES",
    "CaseMetrics",
    "FolderEvaluation",
    "SegmentationSummary",
    "aggregate",
    "case_metrics",
    "dice",
    "evaluate_folders",
    "jaccard",
    "surface",
    "surface_distances",
]


# -- per case -----------------------------------------------------------------------------------------


def _binary(mask: ArrayLike) -> NDArray[np.bool_]:
    return np.asarray(mask) > 0


def _pair(pred: ArrayLike, truth: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    a, b = _binary(pred), _binary(truth)
    if a.shape != b.shape:
        raise ValueError(f"prediction and truth differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _spacing(spacing: ArrayLike | None, ndim: int) -> NDArray[np.float64]:
    if spacing is None:
        return np.ones(ndim)
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.size != ndim or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be {ndim} positive numbers in array order, got {values.tolist()}")
    return values


def _ratio(num: int, den: int, *, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def dice(pred: ArrayLike, truth: ArrayLike) -> float:
    """2|A∩B| / (|A| + |B|); 1 when both masks are empty."""
    a, b = _pair(pred, truth)
    total = int(a.sum()) + int(b.sum())
    return _ratio(2 * int(np.count_nonzero(a & b)), total, both_empty=total == 0)


def jaccard(pred: ArrayLike, truth: ArrayLike) -> float:
    """|A∩B| / |A∪B| (IoU); 1 when both masks are empty."""
    a, b = _pair(pred, truth)
    union = int(np.count_nonzero(a | b))
    return _ratio(int(np.count_nonzero(a & b)), union, both_empty=union == 0)


def surface(mask: ArrayLike) -> NDArray[np.bool_]:
    """The mask's voxels with a background face neighbour (mask minus its erosion by the 3D cross);
    outside the array is background."""
    m = _binary(mask)
    if not m.any():
        return m
    structure = ndimage.generate_binary_structure(m.ndim, 1)
    return m & ~ndimage.binary_erosion(m, structure=structure, border_value=0)


def surface_distances(
    pred: ArrayLike, truth: ArrayLike, spacing: ArrayLike | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Directed surface distances in mm: from each surface voxel of ``pred`` to the truth's surface, and
    from each surface voxel of ``truth`` to the prediction's. Both masks must be non-empty."""
    a, b = _pair(pred, truth)
    sampling = _spacing(spacing, a.ndim)
    if not a.any() or not b.any():
        raise ValueError("surface distances need two non-empty masks")
    # Work in the union's bounding box, padded by one background voxel: the same surfaces (outside the
    # array is background either way) and the same distances, on far fewer voxels.
    where = np.nonzero(a | b)
    box = tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    a = np.pad(a[box], 1)
    b = np.pad(b[box], 1)
    sa, sb = surface(a), surface(b)
    to_b = ndimage.distance_transform_edt(~sb, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~sa, sampling=sampling)
    return np.asarray(to_b[sa], dtype=np.float64), np.asarray(to_a[sb], dtype=np.float64)


@dataclass(frozen=True)
class CaseMetrics:
    """One case's scores; distances are ``inf`` when exactly one mask is empty."""

    case: str
    tp: int  # voxels in both
    fp: int  # voxels predicted only
    fn: int  # voxels in the truth only
    voxel_volume_mm3: float
    mad_mm: float
    hd_mm: float
    prediction_missing: bool = False  # no prediction file: scored as an empty prediction

    @property
    def dice(self) -> float:
        den = 2 * self.tp + self.fp + self.fn
        return _ratio(2 * self.tp, den, both_empty=den == 0)

    @property
    def jaccard(self) -> float:
        den = self.tp + self.fp + self.fn
        return _ratio(self.tp, den, both_empty=den == 0)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, both_empty=self.tp + self.fp + self.fn == 0)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, both_empty=self.tp + self.fp + self.fn == 0)

    @property
    def volume_pred_mm3(self) -> float:
        return (self.tp + self.fp) * self.voxel_volume_mm3

    @property
    def volume_truth_mm3(self) -> float:
        return (self.tp + self.fn) * self.voxel_volume_mm3

    def as_dict(self) -> dict[str, object]:
        """Plain values; ``inf`` distances become ``None`` (JSON has no infinity)."""
        return {
            "case": self.case,
            "dice": self.dice,
            "jaccard": self.jaccard,
            "precision": self.precision,
            "recall": self.recall,
            "volume_pred_mm3": self.volume_pred_mm3,
            "volume_truth_mm3": self.volume_truth_mm3,
            "mad_mm": _finite_or_none(self.mad_mm),
            "hd_mm": _finite_or_none(self.hd_mm),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "prediction_missing": self.prediction_missing,
        }


CSV_COLUMNS = (
    "case",
    "dice",
    "jaccard",
    "precision",
    "recall",
    "volume_pred_mm3",
    "volume_truth_mm3",
    "mad_mm",
    "hd_mm",
    "tp",
    "fp",
    "fn",
    "prediction_missing",
)


def case_metrics(
    pred: ArrayLike,
    truth: ArrayLike,
    spacing: ArrayLike | None = None,
    *,
    case: str = "",
    prediction_missing: bool = False,
) -> CaseMetrics:
    """Dice, IoU, voxel precision / recall, volumes, MAD and HD of one case (any label > 0 is
    foreground); ``spacing`` in mm in array order (index, row, col), default 1."""
    a, b = _pair(pred, truth)
    sampling = _spacing(spacing, a.ndim)
    tp = int(np.count_nonzero(a & b))
    fp = int(np.count_nonzero(a)) - tp
    fn = int(np.count_nonzero(b)) - tp
    if tp + fp == 0 and tp + fn == 0:
        mad = hd = 0.0
    elif tp + fp == 0 or tp + fn == 0:
        mad = hd = math.inf
    else:
        d_ab, d_ba = surface_distances(a, b, sampling)
        mad = float(np.concatenate([d_ab, d_ba]).mean())
        hd = float(max(d_ab.max(), d_ba.max()))
    return CaseMetrics(case, tp, fp, fn, float(np.prod(sampling)), mad, hd, prediction_missing)


# -- over cases ---------------------------------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class SegmentationSummary:
    """The LNDb set over cases, seed 001's split-level voxel scores, and the mean Dice."""

    cases: int
    dice: float
    jaccard: float  # J
    mad_mm: float  # over the cases with finite distances
    hd_mm: float
    distance_undefined: int  # cases left out of MAD and HD: exactly one mask empty
    volume_correlation: float  # C, Pearson r of predicted vs true volumes
    bias_mm3: float  # mean |V_pred - V_true|
    std_mm3: float  # std of V_pred - V_true (ddof 0)
    voxel_precision: float
    voxel_recall: float
    voxel_f1: float

    @property
    def jaccard_star(self) -> float:
        return 1.0 - self.jaccard

    @property
    def volume_correlation_star(self) -> float:
        return 1.0 - self.volume_correlation

    def as_dict(self) -> dict[str, object]:
        """Plain values in a fixed order; ``nan`` (undefined) becomes ``None``."""
        values: dict[str, float | int] = {
            "cases": self.cases,
            "dice": self.dice,
            "jaccard": self.jaccard,
            "jaccard_star": self.jaccard_star,
            "mad_mm": self.mad_mm,
            "hd_mm": self.hd_mm,
            "distance_undefined": self.distance_undefined,
            "volume_correlation": self.volume_correlation,
            "volume_correlation_star": self.volume_correlation_star,
            "bias_mm3": self.bias_mm3,
            "std_mm3": self.std_mm3,
            "voxel_precision": self.voxel_precision,
            "voxel_recall": self.voxel_recall,
            "voxel_f1": self.voxel_f1,
        }
        return {k: v if isinstance(v, int) else _finite_or_none(float(v)) for k, v in values.items()}


def _pearson(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    if len(x) < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return min(1.0, max(-1.0, float(dx @ dy) / den)) if den > 0 else math.nan


def aggregate(cases: Iterable[CaseMetrics]) -> SegmentationSummary:
    """The set's scores (see the module's docstring); ``nan`` where undefined (no case at all)."""
    cases = list(cases)
    n = len(cases)
    nan = math.nan
    mean = lambda values: float(np.mean(values)) if len(values) else nan  # noqa: E731
    finite = [c for c in cases if math.isfinite(c.mad_mm)]
    v_pred = np.array([c.volume_pred_mm3 for c in cases], dtype=np.float64)
    v_true = np.array([c.volume_truth_mm3 for c in cases], dtype=np.float64)
    diff = v_pred - v_true
    tp = sum(c.tp for c in cases)
    fp = sum(c.fp for c in cases)
    fn = sum(c.fn for c in cases)
    none = tp + fp + fn == 0
    return SegmentationSummary(
        cases=n,
        dice=mean([c.dice for c in cases]),
        jaccard=mean([c.jaccard for c in cases]),
        mad_mm=mean([c.mad_mm for c in finite]),
        hd_mm=mean([c.hd_mm for c in finite]),
        distance_undefined=n - len(finite),
        volume_correlation=_pearson(v_pred, v_true),
        bias_mm3=mean(np.abs(diff)),
        std_mm3=float(np.std(diff)) if n else nan,
        voxel_precision=_ratio(tp, tp + fp, both_empty=none),
        voxel_recall=_ratio(tp, tp + fn, both_empty=none),
        voxel_f1=_ratio(2 * tp, 2 * tp + fp + fn, both_empty=none),
    )


# -- folders of label images --------------------------------------------------------------------------


@dataclass
class FolderEvaluation:
    cases: list[CaseMetrics]
    summary: SegmentationSummary
    missing_predictions: list[str] = field(default_factory=list)  # truths without a prediction
    extra_predictions: list[str] = field(default_factory=list)  # predictions without a truth (ignored)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "summary": self.summary.as_dict(),
            "missing_predictions": self.missing_predictions,
            "extra_predictions": self.extra_predictions,
            "notes": self.notes,
        }

    def per_case_csv(self) -> str:
        def cell(value: object) -> str:
            if isinstance(value, bool):
                return str(int(value))
            if isinstance(value, float):
                return "inf" if math.isinf(value) else f"{value:.6g}"
            return str(value)

        rows = [",".join(CSV_COLUMNS)]
        for c in self.cases:
            values = {**c.as_dict(), "mad_mm": c.mad_mm, "hd_mm": c.hd_mm}
            rows.append(",".join(cell(values[k]) for k in CSV_COLUMNS))
        return "\n".join(rows) + "\n"


def _images(folder: Path, role: str) -> dict[str, Path]:
    from lungtk.ct_io.io.formats import series_uid_of

    if not folder.is_dir():
        raise LungtkError(f"{role} folder {folder} not found or not a folder; give a folder of label images")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        hidden = path.name.startswith(".")  # an atomic writer's temporary file, macOS's ._ files
        if not hidden and path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES):
            uid = series_uid_of(path)
            if uid in found:
                raise LungtkError(
                    f"{found[uid]} and {path} have the same series UID {uid!r}; keep one of them in {folder}"
                )
            found[uid] = path
    return found


def _check_geometry(pred_path: Path, pred: CTVolume, truth_path: Path, truth: CTVolume) -> None:
    problems = []
    if tuple(pred.array.shape) != tuple(truth.array.shape):
        problems.append(f"shape {tuple(pred.array.shape)} vs {tuple(truth.array.shape)}")
    pg, tg = pred.geometry, truth.geometry
    fmt = lambda v: "(" + ", ".join(f"{x:g}" for x in np.ravel(v)) + ")"  # noqa: E731
    for name in ("spacing", "origin", "direction"):
        p, t = getattr(pg, name), getattr(tg, name)
        if not np.allclose(p, t, rtol=0, atol=GEOMETRY_TOLERANCE_MM):
            problems.append(f"{name} {fmt(p)} vs {fmt(t)}")
    if problems:
        raise LungtkError(
            f"prediction {pred_path} and truth {truth_path} differ in geometry ({'; '.join(problems)}); "
            "resample the prediction onto the truth's grid (nearest neighbour) and evaluate again"
        )


def _per_label_cases(
    uid: str, pred: NDArray[Any], truth: NDArray[Any], spacing: NDArray[np.float64], missing: bool
) -> tuple[list[CaseMetrics], int]:
    """One case per truth label, against the prediction label that overlaps it most (none: empty);
    also the number of prediction labels that no truth label took."""
    cases = []
    taken: set[int] = set()
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    for label in (int(v) for v in np.unique(truth) if v > 0):
        inside = truth == label
        under = pred[inside]
        under = under[under > 0].astype(np.int64)
        if under.size:
            values, counts = np.unique(under, return_counts=True)
            best = int(values[np.argmax(counts)])
            taken.add(best)
            predicted = pred == best
        else:
            predicted = np.zeros_like(inside)
        cases.append(
            case_metrics(predicted, inside, spacing, case=f"{uid}:{label}", prediction_missing=missing)
        )
    unmatched = len({int(v) for v in np.unique(pred) if v > 0} - taken)
    return cases, unmatched


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    truth_dir: str | os.PathLike[str],
    *,
    per_label: bool = False,
    on_case: Callable[[str, int, int], None] | None = None,
) -> FolderEvaluation:
    """Score each truth label image in ``truth_dir`` against the prediction of the same series UID in
    ``pred_dir`` (file name without .mhd/.mha/.nii.gz/.nii/.nrrd).

    Any label > 0 is foreground; with ``per_label`` each truth label is a case of its own
    (``uid:label``), scored against the prediction label overlapping it most. A truth without a
    prediction is scored as an empty prediction and listed in ``missing_predictions``; predictions
    without a truth are ignored and listed in ``extra_predictions``. Each pair must share its grid
    (shape; spacing, origin and direction within 1e-3), else a LungtkError names both files.
    ``on_case(uid, done, total)`` is called after each truth image.
    """
    from lungtk.ct_io import read_ct

    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    truths = _images(truth_dir, "truth")
    preds = _images(pred_dir, "prediction")
    if not truths:
        raise LungtkError(f"no label images ({', '.join(IMAGE_SUFFIXES)}) in the truth folder {truth_dir}")
    missing = [uid for uid in truths if uid not in preds]
    extra = [uid for uid in preds if uid not in truths]
    cases: list[CaseMetrics] = []
    notes: list[str] = []
    if extra:
        notes.append(f"{len(extra)} prediction(s) without a truth ignored: {', '.join(extra)}")
    if missing:
        notes.append(f"{len(missing)} truth(s) without a prediction scored as empty: {', '.join(missing)}")
    unmatched_labels = 0
    for done, (uid, truth_path) in enumerate(truths.items(), start=1):
        truth = read_ct(truth_path)
        truth_array = np.asarray(truth.array)
        if uid in preds:
            pred = read_ct(preds[uid])
            _check_geometry(preds[uid], pred, truth_path, truth)
            pred_array = np.asarray(pred.array)
        else:
            pred_array = np.zeros(truth_array.shape, dtype=np.uint8)
        spacing = truth.geometry.spacing_irc
        if per_label:
            found, unmatched = _per_label_cases(uid, pred_array, truth_array, spacing, uid not in preds)
            cases.extend(found)
            unmatched_labels += unmatched
        else:
            cases.append(
                case_metrics(pred_array, truth_array, spacing, case=uid, prediction_missing=uid not in preds)
            )
        if on_case is not None:
            on_case(uid, done, len(truths))
    if unmatched_labels:
        notes.append(f"{unmatched_labels} prediction label(s) overlapping no truth label ignored")
    return FolderEvaluation(cases, aggregate(cases), missing, extra, notes)
