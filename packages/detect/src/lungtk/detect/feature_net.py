"""NoduleNet's FeatureNet (Tang et al., MICCAI 2019; seed 003), the backbone shared by its heads and by the
Models Genesis pre-training.

pre-block: conv 3^3 stride 2 (24) and conv 3^3 (24), BatchNorm + ReLU -> forw1: 2 residual blocks (32) at
stride 2 -> max-pool -> forw2: 2 blocks (64) at stride 4 (``r4``, the RCNN's crops) -> max-pool -> forw3: 3
blocks (64) -> max-pool -> forw4: 3 blocks (64) at stride 16 -> transposed conv up, concatenated with forw3
-> back3: 3 blocks (64) -> transposed conv up, concatenated with forw2 -> back2: 3 blocks (128) = the
feature map at stride 4 (``f4``). Residual blocks are NoduleNet's (BatchNorm, ReLU) with an optional
attention module on the residual branch before the addition (``none``, ``cbam`` or ``qam``: seed 003's
Quartet attention in all 16 blocks). Every width is the reference's times ``width``.

The input (a windowed CT patch whose values span ``input_range``) is mapped onto [-1, 1] first, as the
reference's ``(u8 - 128) / 128``, so one network takes any window.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks import ConvNormAct, ResidualBlock

ATTENTIONS = {"none": None, "cbam": "cbam", "qam": "quartet"}
DIVISOR = 16  # the input's sides must be multiples of this (stride 2 and three poolings)


def check_attention(attention: str) -> str | None:
    """nn-blocks' name of attention ``none``, ``cbam`` or ``qam``; another is a one-line error."""
    if attention not in ATTENTIONS:
        raise LungtkError(f"attention {attention!r}: use none, cbam or qam (Quartet attention)")
    return ATTENTIONS[attention]


def scaled(channels: int, width: float) -> int:
    """The reference's channel count times ``width``, at least 1."""
    return max(1, round(channels * width))


class Features(NamedTuple):
    """FeatureNet's outputs: the normalised input, forw1 (stride 2), back2 (stride 4) and forw2 (stride 4)."""

    image: torch.Tensor
    f2: torch.Tensor
    f4: torch.Tensor
    r4: torch.Tensor


def _up(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(channels, channels, kernel_size=2, stride=2), nn.BatchNorm3d(channels), nn.ReLU()
    )


class FeatureNet(nn.Module):
    def __init__(
        self, width: float = 1.0, attention: str = "none", input_range: Sequence[float] = (0.0, 255.0)
    ) -> None:
        super().__init__()
        if not width > 0:
            raise LungtkError(f"width {width!r}: use a positive factor (1 is the reference's widths)")
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise LungtkError(f"input_range {list(input_range)}: give LOW < HIGH")
        self.input_low, self.input_scale = low, 2.0 / (high - low)
        c = partial(scaled, width=width)
        block = partial(ResidualBlock.nodulenet, attention=check_attention(attention))
        c24, c32, c64 = c(24), c(32), c(64)
        self.channels = {"f2": c32, "f4": 2 * c64, "r4": c64}
        self.pre_block = nn.Sequential(
            ConvNormAct(1, c24, stride=2, norm="batch", act="relu"),
            ConvNormAct(c24, c24, norm="batch", act="relu"),
        )
        self.forw1 = nn.Sequential(block(c24, c32), block(c32, c32))
        self.forw2 = nn.Sequential(block(c32, c64), block(c64, c64))
        self.forw3 = nn.Sequential(*(block(c64, c64) for _ in range(3)))
        self.forw4 = nn.Sequential(*(block(c64, c64) for _ in range(3)))
        self.path1 = _up(c64)
        self.back3 = nn.Sequential(block(2 * c64, c64), block(c64, c64), block(c64, c64))
        self.path2 = _up(c64)
        self.back2 = nn.Sequential(*(block(2 * c64, 2 * c64) for _ in range(3)))
        self.pool = nn.MaxPool3d(2)

    def forward(self, x: torch.Tensor) -> Features:
        if x.ndim != 5 or any(s % DIVISOR for s in x.shape[2:]):
            raise LungtkError(
                f"FeatureNet takes (B, 1, D, H, W) with D, H, W multiples of {DIVISOR}, got {tuple(x.shape)}"
            )
        image = (x - self.input_low) * self.input_scale - 1.0
        out1 = self.forw1(self.pre_block(image))
        out2 = self.forw2(self.pool(out1))
        out3 = self.forw3(self.pool(out2))
        out4 = self.forw4(self.pool(out3))
        comb3 = self.back3(torch.cat([self.path1(out4), out3], dim=1))
        comb2 = self.back2(torch.cat([self.path2(comb3), out2], dim=1))
        return Features(image, out1, comb2, out2)
