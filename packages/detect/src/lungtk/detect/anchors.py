"""NoduleNet's cubic anchors and their assignment to the true boxes of a patch.

At every voxel of the stride-4 feature map sit cubes of each anchor size (5, 10, 20, 30 and 50 mm in the
reference; in voxels at the training spacing), centred on the input voxel that the feature voxel covers:
feature voxel ``i`` is centred at input coordinate ``i * stride + (stride - 1) / 2``. Anchors are ordered
(z, y, x, size), the order of the region-proposal head's flattened outputs.

Assignment (NoduleNet's RPN target): an anchor is positive when its IoU with a true box is at least
``positive_iou`` (0.5), negative when its best IoU is below ``negative_iou`` (0.02), ignored otherwise;
every true box's best anchor(s) are positive too, so a nodule no anchor fits well still has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lungtk.detect.boxes import box_iou

ANCHORS_MM = (5.0, 10.0, 20.0, 30.0, 50.0)
STRIDE = 4
POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def anchor_grid(
    feature_shape: Sequence[int],
    sizes: Sequence[float],
    stride: int = STRIDE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(D * H * W * A, 4) cubes (z, y, x, size) in input voxels for a feature map of ``feature_shape``."""
    axes = [
        torch.arange(n, dtype=torch.float32, device=device) * stride + (stride - 1) / 2 for n in feature_shape
    ]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    centres = torch.stack([z, y, x], dim=-1).reshape(-1, 1, 3)
    size = torch.as_tensor(list(sizes), dtype=torch.float32, device=device)
    size = size.reshape(1, -1, 1).expand(centres.shape[0], -1, 1)
    return torch.cat([centres.expand(-1, len(sizes), 3), size], dim=-1).reshape(-1, 4)


@dataclass(frozen=True)
class Assignment:
    """Per anchor: ``label`` (1 positive, 0 negative, -1 ignored) and ``matched`` (the index of its true box,
    -1 when it has none)."""

    label: torch.Tensor
    matched: torch.Tensor


def assign_anchors(
    anchors: torch.Tensor, truth: torch.Tensor, positive_iou: float = 0.5, negative_iou: float = 0.02
) -> Assignment:
    """Label ``anchors`` (N, 4) against the true cubes ``truth`` (G, 4) of one patch."""
    n = len(anchors)
    label = torch.full((n,), NEGATIVE, dtype=torch.long, device=anchors.device)
    matched = torch.full((n,), -1, dtype=torch.long, device=anchors.device)
    if len(truth) == 0:
        return Assignment(label, matched)
    iou = box_iou(anchors, truth)  # (N, G)
    best, best_truth = iou.max(dim=1)
    label[best >= negative_iou] = IGNORED
    positive = best >= positive_iou
    label[positive] = POSITIVE
    matched[positive] = best_truth[positive]
    per_truth = iou.max(dim=0).values  # each true box's best anchor(s), ties included
    anchor_idx, truth_idx = torch.nonzero(
        (iou == per_truth[None, :]) & (per_truth[None, :] > 0), as_tuple=True
    )
    label[anchor_idx] = POSITIVE
    matched[anchor_idx] = truth_idx
    return Assignment(label, matched)
