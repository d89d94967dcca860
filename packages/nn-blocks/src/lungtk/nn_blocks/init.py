"""Weight initialisation: He (fan-out) for convolutions and linear layers, prior-probability bias for a
final classification layer (Lin et al., 2017; seed 004's segmentation output)."""

from __future__ import annotations

import math

from torch import nn

_CONVS = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
)


def he_init_(module: nn.Module, *, mode: str = "fan_out", nonlinearity: str = "relu") -> nn.Module:
    """Kaiming-normal weights and zero biases for every conv / linear layer; norms to weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, _CONVS):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def prior_bias_(layer: nn.Module, prior: float = 0.01) -> nn.Module:
    """Set a final layer's bias to ``-log((1 - prior) / prior)``, so its sigmoid starts at ``prior``."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior lies strictly between 0 and 1, got {prior}")
    bias = getattr(layer, "bias", None)
    if bias is None:
        raise ValueError(f"{type(layer).__name__} has no bias to initialise")
    nn.init.constant_(bias, -math.log((1.0 - prior) / prior))
    return layer
