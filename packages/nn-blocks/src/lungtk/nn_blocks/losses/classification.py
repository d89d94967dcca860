"""Classification and detection-head losses: inverse-frequency class weights, focal loss, and the joint
segmentation + classification loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lungtk.nn_blocks.losses._targets import Activation, reduce
from lungtk.nn_blocks.losses.dice import DiceLoss


def inverse_frequency_weights(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``total / (n_classes * count)`` per class (scikit-learn's "balanced"); absent classes get 0."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    weights = counts.sum() / (len(counts) * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights)).float()


class WeightedCrossEntropyLoss(nn.Module):
    """Cross-entropy with inverse-frequency class weights: from the data set's ``counts`` when given, else
    from each batch's labels."""

    def __init__(
        self, num_classes: int, counts: Sequence[int] | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        fixed = inverse_frequency_weights(counts) if counts is not None else torch.zeros(0)
        self.register_buffer("weight", fixed)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if weight.numel() == 0:
            weight = inverse_frequency_weights(torch.bincount(target.flatten(), minlength=self.num_classes))
        return F.cross_entropy(logits, target, weight=weight.to(logits), label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    Sigmoid form: logits and 0/1 targets of the same shape, alpha weighting positives (1 - alpha the
    negatives; ``alpha=None`` for none). Softmax form: (N, C, ...) logits and class-index targets, alpha
    (if given) a per-class weight sequence.
    """

    def __init__(
        self,
        alpha: float | Sequence[float] | None = 0.25,
        gamma: float = 2.0,
        activation: Activation = "sigmoid",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.alpha, self.gamma, self.activation, self.reduction = alpha, gamma, activation, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            target = target.to(logits.dtype)
            ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            p = torch.sigmoid(logits)
            p_t = p * target + (1 - p) * (1 - target)
            loss = ce * (1 - p_t) ** self.gamma
            if self.alpha is not None:
                loss = loss * (self.alpha * target + (1 - self.alpha) * (1 - target))  # type: ignore[operator]
        else:
            log_p = F.log_softmax(logits, dim=1)
            log_p_t = log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)
            loss = -((1 - log_p_t.exp()) ** self.gamma) * log_p_t
            if self.alpha is not None:
                loss = (
                    loss
                    * torch.as_tensor(self.alpha, dtype=logits.dtype, device=logits.device)[target.long()]
                )
        return reduce(loss, self.reduction)


class JointSegClsLoss(nn.Module):
    """Joint segmentation + classification: ``seg_loss + lam * cross_entropy`` (seed 000's Dice + lambda CE;
    seed 004 writes it ``L_cls + lambda L_seg``: use ``lam = 1 / lambda`` and scale).

    ``forward`` returns the total; ``last`` holds the detached parts of the latest call.
    """

    def __init__(
        self, lam: float = 1.0, seg_loss: nn.Module | None = None, cls_loss: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.lam = lam
        self.seg_loss = seg_loss or DiceLoss("softmax")
        self.cls_loss = cls_loss or nn.CrossEntropyLoss()
        self.last: dict[str, float] = {}

    def forward(
        self,
        seg_pred: torch.Tensor,
        seg_target: torch.Tensor,
        cls_logits: torch.Tensor,
        cls_target: torch.Tensor,
    ) -> torch.Tensor:
        seg = self.seg_loss(seg_pred, seg_target)
        cls = self.cls_loss(cls_logits, cls_target)
        self.last = {"seg": float(seg.detach()), "cls": float(cls.detach())}
        return seg + self.lam * cls
