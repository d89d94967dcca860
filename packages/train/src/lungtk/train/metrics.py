"""Validation metrics as sums: each metric accumulates a few counts, which torchrun ranks add up
(one all-reduce) before the values are computed, so a metric over two processes equals the metric over
one. Definitions follow the seed specs: segmentation Dice, precision and recall are voxel-level sums over
the whole validation set (seed 001); classification accuracy, precision, recall, F1 and a binned AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

AUC_BINS = 1000


class Metric:
    """Accumulate with :meth:`update` (model output, batch), read with :meth:`compute`."""

    names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().double().cpu()
        self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Sum the counts over processes (``all_reduce`` sums a tensor in place across ranks)."""
        if all_reduce is None:
            return
        for name in sorted(self.sums):
            self.sums[name] = all_reduce(self.sums[name])


def _logits(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output


class SegmentationMetric(Metric):
    """Dice, precision and recall of ``sigmoid(logits) > threshold`` (one output channel) or of the
    argmax's foreground (several channels), summed over every validation voxel."""

    names = ("dice", "precision", "recall")

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        logits = _logits(output).float()
        target = batch["target"].to(logits.device) > 0.5
        pred = (
            torch.sigmoid(logits) > self.threshold
            if logits.shape[1] == 1
            else (logits.argmax(1, keepdim=True) > 0)
        )
        target = target if target.shape == pred.shape else target.any(1, keepdim=True)
        self.add("tp", (pred & target).sum())
        self.add("fp", (pred & ~target).sum())
        self.add("fn", (~pred & target).sum())

    def compute(self) -> dict[str, float]:
        tp, fp, fn = (float(self.sums.get(k, torch.zeros(()))) for k in ("tp", "fp", "fn"))
        return {
            "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
        }


class BinaryClassificationMetric(Metric):
    """Accuracy, precision, recall, F1 at ``threshold`` and the ROC AUC from a 1000-bin score histogram
    (exact up to ties within a bin). Output: (N, 1) logits (sigmoid) or (N, 2) (softmax, class 1)."""

    names = ("accuracy", "precision", "recall", "f1", "auc")

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        logits = _logits(output).float()
        score = torch.softmax(logits, 1)[:, 1] if logits.shape[-1] == 2 else torch.sigmoid(logits.reshape(-1))
        label = batch["label"].to(score.device).reshape(-1) == 1
        pred = score >= self.threshold
        self.add("tp", (pred & label).sum())
        self.add("fp", (pred & ~label).sum())
        self.add("fn", (~pred & label).sum())
        self.add("tn", (~pred & ~label).sum())
        bins = torch.clamp((score * AUC_BINS).long(), 0, AUC_BINS - 1)
        self.add("pos_hist", torch.bincount(bins[label], minlength=AUC_BINS))
        self.add("neg_hist", torch.bincount(bins[~label], minlength=AUC_BINS))

    def compute(self) -> dict[str, float]:
        tp, fp, fn, tn = (float(self.sums.get(k, torch.zeros(()))) for k in ("tp", "fp", "fn", "tn"))
        n = tp + fp + fn + tn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out = {
            "accuracy": (tp + tn) / n if n else 0.0,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "auc": float("nan"),
        }
        pos, neg = self.sums.get("pos_hist"), self.sums.get("neg_hist")
        if pos is not None and neg is not None and pos.sum() > 0 and neg.sum() > 0:
            # P(score_pos > score_neg) + P(tie) / 2, bin by bin
            neg_below = torch.cumsum(neg, 0) - neg
            out["auc"] = float(((pos * neg_below).sum() + 0.5 * (pos * neg).sum()) / (pos.sum() * neg.sum()))
        return out


class MulticlassMetric(Metric):
    """Accuracy, support-weighted F1 (seed 004's "AveF1") and Gorodkin's multiclass MCC, from the
    confusion matrix of the argmax over ``classes`` logits (rows: truth, columns: prediction)."""

    names = ("accuracy", "f1", "mcc")

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        self.add("confusion", _confusion(_logits(output), batch["label"], self.classes))

    def compute(self) -> dict[str, float]:
        return confusion_scores(self.sums.get("confusion", torch.zeros(self.classes, self.classes)).numpy())


class JointHeadMetric(SegmentationMetric):
    """A joint network's (seed 000's texture head): the segmentation metrics of its first output and,
    as ``head_accuracy``, ``head_f1`` and ``head_mcc``, :class:`MulticlassMetric`'s of its second output
    over the patches that hold a rated nodule."""

    names = (*SegmentationMetric.names, "head_accuracy", "head_f1", "head_mcc")

    def __init__(self, classes: int, threshold: float = 0.5) -> None:
        super().__init__(threshold)
        self.classes = classes

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        super().update(output, batch)
        if isinstance(output, tuple | list) and len(output) > 1 and batch.get("label") is not None:
            self.add("head_confusion", _confusion(output[1], batch["label"], self.classes))

    def compute(self) -> dict[str, float]:
        out = super().compute()
        confusion = self.sums.get("head_confusion")
        if confusion is not None:
            out.update({f"head_{k}": v for k, v in confusion_scores(confusion.numpy()).items()})
        return out


def _confusion(logits: torch.Tensor, label: torch.Tensor, classes: int) -> torch.Tensor:
    """The confusion matrix (rows truth, columns argmax) of the samples whose label is not -1."""
    label = label.to(logits.device).reshape(-1)
    known = label >= 0
    cells = label[known] * classes + logits.float().argmax(1)[known]
    return torch.bincount(cells, minlength=classes**2).reshape(classes, -1)


def confusion_scores(confusion: Any) -> dict[str, float]:
    """Accuracy, support-weighted F1 and multiclass MCC of a confusion matrix (rows truth, columns
    prediction), as scikit-learn's ``accuracy_score``, ``f1_score(average="weighted")`` and
    ``matthews_corrcoef`` define them; NaN for an empty matrix."""
    import numpy as np

    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return {"accuracy": float("nan"), "f1": float("nan"), "mcc": float("nan")}
    correct = np.diag(c)
    truth, predicted = c.sum(1), c.sum(0)
    f1 = np.divide(2 * correct, truth + predicted, out=np.zeros_like(correct), where=truth + predicted > 0)
    k = correct.sum()
    cov_tp = k * n - truth @ predicted
    cov_pp, cov_tt = n * n - predicted @ predicted, n * n - truth @ truth
    mcc = cov_tp / np.sqrt(cov_pp * cov_tt) if cov_pp > 0 and cov_tt > 0 else 0.0
    return {"accuracy": float(k / n), "f1": float((f1 * truth).sum() / n), "mcc": float(mcc)}
