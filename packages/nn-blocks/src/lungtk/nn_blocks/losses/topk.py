"""Seed 002's Top-K (online bootstrapped) BCE combined with Dice."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lungtk.nn_blocks.losses._targets import as_channels
from lungtk.nn_blocks.losses.dice import DiceLoss


def topk_bce(logits: torch.Tensor, target: torch.Tensor, k_fraction: float) -> torch.Tensor:
    """The mean binary cross-entropy of the ``k_fraction`` hardest voxels (at least one)."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").flatten()
    k = max(1, min(bce.numel(), math.ceil(k_fraction * bce.numel())))
    return bce.topk(k, sorted=False).values.mean()


class TopKBCEDiceLoss(nn.Module):
    """``alpha * BCE_topK / BCE_0 + (1 - alpha) * Dice / Dice_0``.

    The hardest voxels are as many as the target's foreground fraction (``k_fraction=None``; never fewer
    than ``min_fraction``) or a fixed fraction. With ``normalize`` each term is divided by its value on
    the first batch, so alpha weighs terms of comparable size, as seed 002 does.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        *,
        k_fraction: float | None = None,
        min_fraction: float = 0.001,
        normalize: bool = True,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha lies in 0..1, got {alpha}")
        self.alpha, self.k_fraction, self.min_fraction, self.normalize = (
            alpha,
            k_fraction,
            min_fraction,
            normalize,
        )
        self.dice = DiceLoss("sigmoid", smooth=smooth)
        self.register_buffer("scale", torch.zeros(2))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        g = as_channels(target, logits)
        fraction = self.k_fraction if self.k_fraction is not None else float(g.mean())
        bce = topk_bce(logits, g, max(fraction, self.min_fraction))
        dice = self.dice(logits, g)
        if self.normalize:
            if not bool(self.scale.all()):
                self.scale.copy_(torch.stack([bce.detach(), dice.detach()]).clamp_min(1e-8))
            bce, dice = bce / self.scale[0], dice / self.scale[1]
        return self.alpha * bce + (1.0 - self.alpha) * dice
