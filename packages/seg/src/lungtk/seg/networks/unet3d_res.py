"""Seed 002's 3D U-Net with residual units (MONAI's UNet with ``num_res_units``), for MSD Task06 Lung.

Residual units of ``subunits`` x (conv, InstanceNorm, PReLU), the first unit of every level below the top
strided by 2 instead of pooled, transposed convolutions up with concatenated skips and one-subunit
residual units in the decoder; channels (16, 32, 64, 128, 256) by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.nn_blocks.unet import UNet


class UNet3DRes(nn.Module):
    TINY: ClassVar[dict[str, Any]] = {"args": {"channels": (4, 8, 16)}, "input": (1, 16, 16, 16)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        *,
        subunits: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.unet = UNet(
            in_channels,
            1,
            channels,
            3,
            block="unit",
            downsample="stride",
            block_kwargs={"norm": "instance", "act": "prelu", "dropout": dropout},
            encoder_kwargs=[{"subunits": subunits}] * len(channels),
            decoder_kwargs=[{"subunits": 1}] * (len(channels) - 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
