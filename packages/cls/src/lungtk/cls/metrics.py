"""Classification metrics a reviewer can check: accuracy, support-weighted F1 (seed 004's "AveF1"),
Matthews' correlation (Gorodkin's multiclass form), the ROC AUC with a bootstrap 95% interval, the
confusion matrix, and seed 001's end-to-end table (missed / filtered out / predicted benign / predicted
malignant, a detection matching a nodule within 0.7 of its diameter).

Definitions are scikit-learn's (``accuracy_score``, ``f1_score(average="weighted")``,
``matthews_corrcoef``, ``roc_auc_score``), against which the tests check them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from lungtk.core import LungtkError
from lungtk.train.metrics import confusion_scores


def confusion_matrix(truth: ArrayLike, predicted: ArrayLike, classes: int) -> NDArray[np.int64]:
    """Counts, rows the true class, columns the predicted one."""
    t, p = np.asarray(truth, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{t.shape[0]} true classes but {p.shape[0]} predictions")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= classes):
        raise ValueError(f"classes must lie in 0..{classes - 1}")
    return np.bincount(t * classes + p, minlength=classes * classes).reshape(classes, classes)


def roc_auc(truth: ArrayLike, score: ArrayLike) -> float:
    """The ROC AUC of ``score`` for the positive class (truth 1): the Mann-Whitney U over both classes'
    sizes, ties counted half. NaN when a class is absent."""
    t, s = np.asarray(truth).astype(bool), np.asarray(score, dtype=np.float64)
    pos, neg = int(t.sum()), int((~t).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[t].sum() - pos * (pos + 1) / 2) / (pos * neg))


def bootstrap_auc(
    truth: ArrayLike, score: ArrayLike, *, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval of the AUC (cases resampled with replacement; resamples with one
    class only are skipped)."""
    t, s = np.asarray(truth).astype(bool), np.asarray(score, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        pick = rng.integers(0, len(t), len(t))
        value = roc_auc(t[pick], s[pick])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class ClassificationReport:
    """The metrics of one task over ``n`` cases."""

    task: str
    labels: tuple[str, ...]
    n: int
    accuracy: float
    f1: float
    mcc: float
    confusion: list[list[int]]
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "task": self.task,
            "labels": list(self.labels),
            "n": self.n,
            "accuracy": self.accuracy,
            "f1": self.f1,
            "mcc": self.mcc,
            "confusion": self.confusion,
        }
        if self.auc is not None:
            out["auc"] = self.auc
            out["auc_ci95"] = list(self.auc_ci) if self.auc_ci else None
        return {**out, **self.extra}


def classification_report(
    task: str,
    labels: Sequence[str],
    truth: ArrayLike,
    predicted: ArrayLike,
    score: ArrayLike | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> ClassificationReport:
    """Metrics of ``predicted`` classes against ``truth`` (indices into ``labels``); with ``score`` (the
    probability of labels[1]) for a two-class task, also the AUC and its bootstrap interval."""
    t = np.asarray(truth, dtype=np.int64)
    if not t.size:
        raise LungtkError(f"{task}: no cases to evaluate (no finding matched a nodule with a {task} rating)")
    confusion = confusion_matrix(t, predicted, len(labels))
    scores = confusion_scores(confusion)
    auc = ci = None
    if score is not None and len(labels) == 2:
        auc = roc_auc(t == 1, score)
        ci = bootstrap_auc(t == 1, score, samples=bootstrap, seed=seed) if bootstrap else None
    return ClassificationReport(
        task,
        tuple(labels),
        int(t.size),
        scores["accuracy"],
        scores["f1"],
        scores["mcc"],
        confusion.tolist(),
        auc,
        ci,
    )


# -- seed 001's end-to-end table -------------------------------------------------------------------------
E2E_ROWS = ("non-nodule", "benign", "malignant")
E2E_COLUMNS = ("missed", "filtered out", "predicted benign", "predicted malignant")
MATCH_FRACTION = 0.7  # seed 001: a detection is a nodule's when closer than 0.7 of its diameter


def end_to_end_table(
    detections_xyz: ArrayLike,
    nodule_probability: ArrayLike,
    malignancy_probability: ArrayLike,
    truth_xyz: ArrayLike,
    truth_diameter_mm: ArrayLike,
    truth_malignant: ArrayLike,
    *,
    nodule_threshold: float = 0.5,
    malignancy_threshold: float = 0.5,
) -> dict[str, dict[str, int]]:
    """Seed 001's table for one scan (sum the tables of several scans): each nodule is counted in the
    highest column any of its detections reaches (missed < filtered out < benign < malignant); detections
    that match no nodule are the non-nodule row. A detection is filtered out below ``nodule_threshold``."""
    det = np.asarray(detections_xyz, dtype=float).reshape(-1, 3)
    p_nod, p_mal = np.asarray(nodule_probability, float), np.asarray(malignancy_probability, float)
    gt = np.asarray(truth_xyz, dtype=float).reshape(-1, 3)
    diam, malignant = np.asarray(truth_diameter_mm, float), np.asarray(truth_malignant, bool)
    outcome = np.where(p_nod < nodule_threshold, 1, np.where(p_mal < malignancy_threshold, 2, 3))
    table = {row: dict.fromkeys(E2E_COLUMNS, 0) for row in E2E_ROWS}
    distance = (
        np.linalg.norm(det[:, None, :] - gt[None, :, :], axis=2) if len(gt) else np.zeros((len(det), 0))
    )
    matched = distance < MATCH_FRACTION * diam[None, :] if len(gt) else np.zeros((len(det), 0), bool)
    for j in range(len(gt)):
        best = int(outcome[matched[:, j]].max()) if matched[:, j].any() else 0
        table["malignant" if malignant[j] else "benign"][E2E_COLUMNS[best]] += 1
    for i in np.flatnonzero(~matched.any(axis=1)) if len(det) else []:
        table["non-nodule"][E2E_COLUMNS[int(outcome[i])]] += 1
    return table
