"""Shared handling of predictions and targets for the segmentation losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Activation = Literal["sigmoid", "softmax"] | None


def activate(pred: torch.Tensor, activation: Activation) -> torch.Tensor:
    """The activated prediction in float32 at least: sums over a volume overflow float16 (65504)."""
    if pred.dtype in (torch.float16, torch.bfloat16):
        pred = pred.float()
    if activation == "sigmoid":
        return torch.sigmoid(pred)
    if activation == "softmax":
        return torch.softmax(pred, dim=1)
    if activation is None:
        return pred
    raise ValueError(f"activation must be 'sigmoid', 'softmax' or None, got {activation!r}")


def as_channels(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """The target as a float (N, C, *spatial) tensor like ``pred``: used as is when the shapes match, one-hot
    encoded when it holds class indices of shape (N, *spatial) or (N, 1, *spatial)."""
    if target.shape == pred.shape:
        return target.to(pred.dtype)
    if target.dim() == pred.dim() and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != pred.shape[:1] + pred.shape[2:]:
        raise ValueError(f"target shape {tuple(target.shape)} does not fit prediction {tuple(pred.shape)}")
    if pred.shape[1] == 1:
        return target.unsqueeze(1).to(pred.dtype)
    one_hot = F.one_hot(target.long(), pred.shape[1])
    return one_hot.movedim(-1, 1).to(pred.dtype)


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
