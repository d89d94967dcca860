"""Seed 001's 2.5D U-Net (Stevens et al.'s LUNA16 candidate finder): a 2D U-Net whose input channels are
an axial slice and its 3 neighbours above and below, normalised by a BatchNorm on the input.

Depth 3, 16 filters doubling per level, two 3x3 convolutions with BatchNorm and ReLU per level, max-pool
down, transposed convolution up, one output channel (logits; the paper's wrapper ends with a sigmoid).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.nn_blocks import he_init_, prior_bias_
from lungtk.nn_blocks.unet import UNet


class UNet25D(nn.Module):
    """(B, slices, H, W) -> (B, 1, H, W) logits for the centre slice."""

    TINY: ClassVar[dict[str, Any]] = {"args": {"slices": 7, "width": 4, "depth": 3}, "input": (7, 16, 16)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(self, slices: int = 7, width: int = 16, depth: int = 3) -> None:
        super().__init__()
        self.slices = slices
        self.input_norm = nn.BatchNorm2d(slices)
        self.unet = UNet(
            slices,
            1,
            [width * 2**i for i in range(depth)],
            2,
            block="double",
            block_kwargs={"norm": "batch", "act": "relu"},
        )
        he_init_(self.unet)
        # [D] the output starts at the focal-loss prior (pi = 0.01), not at p = 0.5 everywhere: from there
        # the soft Dice's gradient on background voxels is tiny and training sits at 'all nodule'.
        prior_bias_(self.unet.head, 0.01)

    @property
    def divisor(self) -> int:
        return self.unet.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(self.input_norm(x))
