"""Seed 004's dilated 3D U-Net (Wang et al., CMIG 2021): 15 convolutions, dilations
1,1 | 2,2 | 2,2 | 4,4 (encoder, 3 max-pools) and 2,2 | 2,2 | 1,1 (decoder, plain x2 upsampling with
concatenated skips), then a 1x1x1 convolution; widths 16-32-64-128 (given only in the paper's figure).

The output is one foreground logit, whose bias starts at the focal-loss prior (pi = 0.01) as the paper
initialises its last layer; a sigmoid of it equals the paper's 2-channel softmax foreground probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.nn_blocks import he_init_, prior_bias_
from lungtk.nn_blocks.unet import UNet

ENCODER_DILATIONS = (1, 2, 2, 4)
DECODER_DILATIONS = (1, 2, 2)  # top level first: the last decoder level uses dilation 1


class DilatedUNet(nn.Module):
    TINY: ClassVar[dict[str, Any]] = {"args": {"widths": (4, 4, 8, 8)}, "input": (1, 16, 16, 16)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.unet = UNet(
            in_channels,
            1,
            widths,
            3,
            block="dilated",
            encoder_blocks=2,
            decoder_blocks=2,
            upsample="nearest",
            block_kwargs={"norm": "batch", "act": "relu"},
            encoder_kwargs=[{"dilation": d} for d in ENCODER_DILATIONS],
            decoder_kwargs=[{"dilation": d} for d in DECODER_DILATIONS],
        )
        he_init_(self.unet)
        prior_bias_(self.unet.head, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
