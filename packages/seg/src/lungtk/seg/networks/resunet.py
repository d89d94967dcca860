"""Seed 000's residual 3D U-Net with the joint texture head (Rassadin, LNDb 2020).

Five levels of residual blocks (GroupNorm with 8 groups, ELU), widths ``width * 2**level`` (32 in the
paper), max-pool down, transposed-convolution up with concatenated skips, optional 3D CBAM in every block,
and a classification head on the encoder's bottleneck: global average pool -> FC -> ELU -> FC -> ELU ->
FC (GGO / part-solid / solid), dropout before each hidden FC (0.6 in the paper's validation model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.core.labels import TEXTURES
from lungtk.nn_blocks import he_init_
from lungtk.nn_blocks.unet import UNet


class ResUNet(nn.Module):
    """``forward(x)`` -> segmentation logits (B, 1, *spatial), and texture logits (B, 3) when the head is
    on (``texture_classes > 0``) as ``(seg, texture)``."""

    TINY: ClassVar[dict[str, Any]] = {"args": {"width": 4, "levels": 3}, "input": (1, 16, 16, 16)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        levels: int = 5,
        *,
        attention: str | None = None,
        texture_classes: int = len(TEXTURES),
        head_hidden: Sequence[int] = (256, 128),
        head_dropout: float = 0.6,
    ) -> None:
        super().__init__()
        groups = math.gcd(8, width)  # GroupNorm(8) as the paper; fewer groups when a tiny width needs it
        self.unet = UNet(
            in_channels,
            1,
            [width * 2**i for i in range(levels)],
            3,
            block="residual",
            block_kwargs={"norm": ("group", {"num_groups": groups}), "act": "elu", "attention": attention},
        )
        self.texture_head: nn.Module | None = None
        if texture_classes > 0:
            layers: list[nn.Module] = [nn.AdaptiveAvgPool3d(1), nn.Flatten()]
            channels = self.unet.widths[-1]
            for hidden in head_hidden:
                layers += [nn.Dropout(head_dropout), nn.Linear(channels, hidden), nn.ELU()]
                channels = hidden
            layers.append(nn.Linear(channels, texture_classes))
            self.texture_head = nn.Sequential(*layers)
        he_init_(self, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bottleneck, skips = self.unet.features(x)
        seg = self.unet.decode(bottleneck, skips)
        if self.texture_head is None:
            return seg
        return seg, self.texture_head(bottleneck)
