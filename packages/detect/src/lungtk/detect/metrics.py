"""The validation metric of a detection task: an FROC analysis over validation patches.

Each validation patch is treated as a small scan: its detections (at most ``max_keep`` per patch, the
inference pass's) are marks, its mask's connected components the nodules, and LUNA16's rules apply (a mark
hits a nodule when its centre lies within the nodule's radius; a nodule counts once, at its best mark;
marks on a nodule are never false positives). The scores are binned (1000 bins), so the counts add up
across torchrun ranks like every engine metric.

- ``cpm``: the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per patch (LUNA16's CPM
  with patches for scans; the engine's validation patches are half on nodules, half anywhere);
- ``recall``: the fraction of nodules hit by any detection;
- ``precision``: the fraction of detections scoring 0.5 or more that hit a nodule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lungtk.core.labels import within_radius_matrix
from lungtk.detect.froc import FP_RATES
from lungtk.train.metrics import Metric

BINS = 1000


def _bins(scores: np.ndarray) -> np.ndarray:
    return np.clip((scores * BINS).astype(np.int64), 0, BINS - 1)


def _histogram(scores: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.bincount(_bins(scores), minlength=BINS).astype(np.float64))


class DetectionMetric(Metric):
    names = ("cpm", "recall", "precision")

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        for detections, truth in zip(output["detections"], output["truth"], strict=True):
            centres = detections.boxes[:, :3].float().cpu().numpy()
            scores = detections.scores.float().cpu().numpy()
            gt = truth.float().cpu().numpy().reshape(-1, 4)
            hits = within_radius_matrix(centres, gt[:, :3], gt[:, 3])  # (K, G)
            best = (
                np.where(hits, scores[:, None], -np.inf).max(axis=0)
                if len(scores)
                else np.full(len(gt), -np.inf)
            )
            found = np.isfinite(best)
            self.add("patches", torch.tensor(1.0))
            self.add("nodules", torch.tensor(float(len(gt))))
            self.add("detected", torch.tensor(float(found.sum())))
            self.add("tp", _histogram(best[found]))
            on_nodule = hits.any(axis=1)
            self.add("fp", _histogram(scores[~on_nodule]))
            self.add("hit_marks", _histogram(scores[on_nodule]))

    def compute(self) -> dict[str, float]:
        zeros = torch.zeros(BINS, dtype=torch.float64)
        patches = float(self.sums.get("patches", torch.zeros(())))
        nodules = float(self.sums.get("nodules", torch.zeros(())))
        tp = self.sums.get("tp", zeros).numpy()
        fp = self.sums.get("fp", zeros).numpy()
        hit_marks = self.sums.get("hit_marks", zeros).numpy()
        # at threshold bin i: the marks scoring in bin i or above
        n_tp = np.cumsum(tp[::-1])[::-1]
        n_fp = np.cumsum(fp[::-1])[::-1]
        sens = n_tp / max(nodules, 1.0)
        fps = n_fp / max(patches, 1.0)
        at = [
            float(sens[fps <= rate + 1e-12].max()) if np.any(fps <= rate + 1e-12) else 0.0
            for rate in FP_RATES
        ]
        half = BINS // 2
        confident = hit_marks[half:].sum() + fp[half:].sum()
        return {
            "cpm": float(np.mean(at)) if nodules else 0.0,
            "recall": float(self.sums.get("detected", torch.zeros(()))) / nodules if nodules else 0.0,
            "precision": float(hit_marks[half:].sum() / confident) if confident else 0.0,
        }
