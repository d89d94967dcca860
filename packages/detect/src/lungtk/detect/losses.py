"""NoduleNet's losses (the reference implementation's, uci-cbcl/NoduleNet): L = L_rpn + L_rcnn + L_mask.

- RPN: per patch, ``num_neg`` (800) negatives drawn at random, then online hard example mining keeps the
  ``num_hard`` x #positives (3x) most confident of them over the batch (at least ``num_hard``, so a patch
  without nodules still trains); classification ``0.5 * BCE(positives) + 0.5 * BCE(hard negatives)``;
  regression: smooth-L1 (beta 1) of each of the 4 box terms over the positive anchors, summed.
- RCNN: cross-entropy weighted by inverse class frequency in the batch, plus the same smooth-L1 on the
  foreground regions.
- Mask: the Tversky loss with alpha = beta = 0.5 (a soft Dice), ``1 - sum(p g) / (sum(p g) + 0.5 sum(p (1 -
  g)) + 0.5 sum((1 - p) g) + 1e-5)`` per region whose target has foreground; lungtk averages it over those
  regions (the reference sums, which grows with the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lungtk.detect.anchors import NEGATIVE, POSITIVE, assign_anchors
from lungtk.detect.boxes import encode


def smooth_l1_terms(deltas: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The sum over the box terms of each term's mean smooth-L1 (0 without rows)."""
    if len(deltas) == 0:
        return deltas.sum() * 0.0
    return sum(F.smooth_l1_loss(deltas[:, i].float(), targets[:, i].float()) for i in range(deltas.shape[1]))  # type: ignore[return-value]


def rpn_loss(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    truth: list[torch.Tensor],
    *,
    positive_iou: float = 0.5,
    negative_iou: float = 0.02,
    num_neg: int = 800,
    num_hard: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, regression) losses of the RPN's ``logits`` (B, N) and ``deltas`` (B, N, 4)."""
    pos_logits, neg_logits, pos_deltas, pos_targets = [], [], [], []
    for b, gt in enumerate(truth):
        assignment = assign_anchors(anchors, gt.float(), positive_iou, negative_iou)
        pos = torch.nonzero(assignment.label == POSITIVE).flatten()
        neg = torch.nonzero(assignment.label == NEGATIVE).flatten()
        if len(neg) > num_neg:
            neg = neg[torch.randperm(len(neg), generator=generator)[:num_neg].to(neg.device)]
        pos_logits.append(logits[b, pos])
        neg_logits.append(logits[b, neg])
        if len(pos):
            pos_deltas.append(deltas[b, pos])
            pos_targets.append(encode(anchors[pos], gt[assignment.matched[pos]].float()))
    positives = torch.cat(pos_logits).float()
    negatives = torch.cat(neg_logits).float()
    hard = min(len(negatives), num_hard * max(len(positives), 1))
    negatives = torch.topk(negatives, hard).values if hard < len(negatives) else negatives
    bce = F.binary_cross_entropy_with_logits
    neg_term = bce(negatives, torch.zeros_like(negatives)) if len(negatives) else logits.sum() * 0.0
    if len(positives):
        cls = 0.5 * bce(positives, torch.ones_like(positives)) + 0.5 * neg_term
    else:
        cls = 0.5 * neg_term
    reg = smooth_l1_terms(torch.cat(pos_deltas), torch.cat(pos_targets)) if pos_deltas else deltas.sum() * 0.0
    return cls, reg


def rcnn_loss(
    logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification, regression) losses of the RCNN head on its sampled regions."""
    if len(labels) == 0:
        zero = logits.sum() * 0.0 + deltas.sum() * 0.0
        return zero, zero
    counts = torch.bincount(labels, minlength=2).clamp(min=1).float()
    weight = len(labels) / counts
    cls = F.cross_entropy(logits.float(), labels, weight=weight / weight.sum())
    fg = labels == 1
    return cls, smooth_l1_terms(deltas[fg], targets[fg])


def tversky_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, beta: float = 0.5
) -> torch.Tensor:
    """NoduleNet's instance mask loss for one region (``alpha = beta = 0.5``: a soft Dice)."""
    p = torch.sigmoid(logits.float()).flatten()
    g = target.float().flatten()
    tp = (p * g).sum()
    return 1.0 - tp / (tp + alpha * (p * (1 - g)).sum() + beta * ((1 - p) * g).sum() + 1e-5)


def mask_loss(logits: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor | None:
    """The mean Tversky loss over the regions whose target holds foreground (None when none does)."""
    losses = [tversky_loss(m, t) for m, t in zip(logits, targets, strict=True) if bool((t > 0.5).any())]
    return torch.stack(losses).mean() if losses else None
