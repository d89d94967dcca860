"""The Gaussian importance map that weights each window's logits before they are blended (nnU-Net's).

Voxels near a window's centre see more context than those at its border, so their logits count more:
the map is a Gaussian centred on the window with ``sigma = sigma_scale * window size`` per axis, scaled
so that its maximum is 1, and its zeros (far tails in float32) are raised to its smallest positive value so
that every voxel of the volume gets a non-zero total weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gaussian_importance_map(window: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """A float32 tensor of shape ``window``, maximum 1, every value > 0, symmetric about the centre."""
    log_weights = torch.zeros((), dtype=torch.float64)
    for size in window:
        offset = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        log_weights = log_weights.unsqueeze(-1) - 0.5 * (offset / (sigma_scale * size)) ** 2
    weights = torch.exp(log_weights - log_weights.max()).to(torch.float32)  # max exactly 1
    return weights.clamp_min(weights[weights > 0].min().item())
