"""Pooling of feature maps under a (soft) mask: what a classification head needs when the class is a
property of one object's voxels (a nodule's texture) rather than of the whole field of view."""

from __future__ import annotations

import torch
from torch import nn


class MaskedPool(nn.Module):
    """``forward(features (B, C, *spatial), mask (B, 1, *spatial))`` -> (B, 2C): per channel, the mean of
    the features weighted by the mask, then their maximum over the voxels where the mask is at least 0.5.

    A sample whose mask has no voxel at 0.5 or more takes the weighted mean as its maximum too; a mask
    summing to zero weighs every voxel equally (the whole field). A mask of another size is resized to the
    features' (trilinear), so a full-resolution mask pools any level of an encoder."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.to(features.dtype)
        if mask.shape[2:] != features.shape[2:]:
            mask = nn.functional.interpolate(mask, size=features.shape[2:], mode="trilinear")
        dims = tuple(range(2, features.dim()))
        total = mask.sum(dims)
        empty = total <= 0
        weight = torch.where(empty.view(-1, 1, *([1] * len(dims))), torch.ones_like(mask), mask)
        mean = (features * weight).sum(dims) / weight.sum(dims)
        inside = weight >= 0.5
        lowest = torch.finfo(features.dtype).min
        peak = features.masked_fill(~inside, lowest).amax(dims)
        peak = torch.where(inside.flatten(1).any(1, keepdim=True), peak, mean)
        return torch.cat([mean, peak], dim=1)
