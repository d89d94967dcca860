"""Soft Dice losses for 2D and 3D, sigmoid and softmax forms.

Predictions are (N, C, *spatial) logits (or probabilities with ``activation=None``); targets have the same
shape, or hold class indices (N, *spatial) / (N, 1, *spatial).
"""

from __future__ import annotations

import torch
from torch import nn

from lungtk.nn_blocks.losses._targets import Activation, activate, as_channels, reduce


def _sums(p: torch.Tensor, g: torch.Tensor, batch: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dims = tuple(range(2, p.dim()))
    if batch:
        dims = (0, *dims)
    return (p * g).sum(dims), p.sum(dims), g.sum(dims)


class DiceLoss(nn.Module):
    """``1 - (2 * sum(p*g) + smooth) / (sum(p) + sum(g) + smooth)`` per sample and channel (per channel
    over the whole batch when ``batch``), then reduced. A perfect prediction gives 0."""

    def __init__(
        self,
        activation: Activation = "sigmoid",
        *,
        include_background: bool = True,
        smooth: float = 1e-5,
        batch: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.activation, self.include_background = activation, include_background
        self.smooth, self.batch, self.reduction = smooth, batch, reduction

    def sums(
        self, pred: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """sum(p*g), sum(p), sum(g) per sample (or over the batch) and channel, after the activation."""
        p = activate(pred, self.activation)
        g = as_channels(target, p)
        if not self.include_background and p.shape[1] > 1:
            p, g = p[:, 1:], g[:, 1:]
        return _sums(p, g, self.batch)

    def per_channel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, psum, gsum = self.sums(pred, target)
        return 1.0 - (2.0 * inter + self.smooth) / (psum + gsum + self.smooth)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reduce(self.per_channel(pred, target), self.reduction)


class GeneralizedDiceLoss(DiceLoss):
    """Generalized Dice (Sudre et al., 2017): channels weighted by ``1 / (sum g)^2``, so small structures
    count as much as large ones. A channel absent from the target takes the largest weight of the others."""

    def per_channel(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter, psum, gsum = self.sums(pred, target)
        w = 1.0 / gsum.square()
        finite = torch.isfinite(w)
        largest = torch.where(finite, w, torch.zeros_like(w)).amax(dim=-1, keepdim=True)
        w = torch.where(finite, w, torch.where(largest > 0, largest, torch.ones_like(w)))
        numerator = 2.0 * (w * inter).sum(-1) + self.smooth
        denominator = (w * (psum + gsum)).sum(-1) + self.smooth
        return 1.0 - numerator / denominator


class RecallWeightedDiceLoss(nn.Module):
    """Seed 001's loss: ``Dice(p, g) + fn_weight * Dice(p * g, g)``.

    The second term sees only the prediction inside the target, so only false negatives raise it: with
    ``fn_weight=8`` (the book's) recall matters 8 times more than precision.
    """

    def __init__(
        self, fn_weight: float = 8.0, activation: Activation = "sigmoid", smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.fn_weight = fn_weight
        self.activation = activation
        self.dice = DiceLoss(None, smooth=smooth)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = activate(pred, self.activation)
        g = as_channels(target, p)
        return self.dice(p, g) + self.fn_weight * self.dice(p * g, g)


def negative_squared_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Seed 004's L_seg (the V-Net form): ``-2 sum(p g) / (sum(p^2) + sum(g^2) + eps)`` per sample with
    ``p = sigmoid(logits)``, averaged over the batch; -1 is a perfect mask."""
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().flatten(1)
    return (-2.0 * (p * g).sum(1) / ((p * p).sum(1) + (g * g).sum(1) + eps)).mean()
