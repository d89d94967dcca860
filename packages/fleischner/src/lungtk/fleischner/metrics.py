"""Agreement metrics for follow-up categories: Fleiss-Cohen (quadratic-weighted) kappa, balanced accuracy
and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungtk.core import LungtkError

N_CATEGORIES = 4


def confusion_matrix(truth: Sequence[int], predicted: Sequence[int], n: int = N_CATEGORIES) -> np.ndarray:
    """Counts with rows = truth and columns = prediction, categories 0..n-1."""
    t, p = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    if t.shape != p.shape:
        raise LungtkError(f"{len(t)} true categories but {len(p)} predictions")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
        raise LungtkError(f"categories must lie in 0..{n - 1}")
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


def weighted_kappa(truth: Sequence[int], predicted: Sequence[int], n: int = N_CATEGORIES) -> float:
    """Cohen's kappa with quadratic weights (Fleiss & Cohen 1973): 1 - sum(W*O) / sum(W*E)."""
    observed = confusion_matrix(truth, predicted, n).astype(float)
    total = observed.sum()
    if total == 0:
        raise LungtkError("kappa needs at least one case")
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    i, j = np.indices((n, n))
    weights = (i - j) ** 2
    denominator = (weights * expected).sum()
    return 1.0 - (weights * observed).sum() / denominator if denominator else 1.0


def balanced_accuracy(truth: Sequence[int], predicted: Sequence[int], n: int = N_CATEGORIES) -> float:
    """The mean of the per-class recalls over the classes present in ``truth``."""
    matrix = confusion_matrix(truth, predicted, n)
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        raise LungtkError("balanced accuracy needs at least one case")
    return float(np.mean(np.diag(matrix)[present] / support[present]))
