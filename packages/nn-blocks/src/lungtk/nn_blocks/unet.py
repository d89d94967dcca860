"""One encoder-decoder that the seed papers' U-Nets are configurations of.

``widths`` gives the channels per level (level 0 at full resolution); each encoder level after the first
downsamples by 2 (max-pool, or a stride-2 first block) and each decoder level upsamples by 2, concatenates
the encoder's skip and applies its blocks. A 1^d convolution maps the last decoder level to the output
logits. The blocks come from nn-blocks' factories by name (double, residual, unit, dilated) with their
keyword arguments, per level where they differ (``encoder_kwargs[i]``, ``decoder_kwargs[i]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks.blocks import DecoderStage, EncoderStage
from lungtk.nn_blocks.layers import conv_type


class UNet(nn.Module):
    """A U-Net: encoder levels, decoder levels with concatenated skips, and a 1^d output convolution.

    ``forward`` returns the logits and, when ``return_features`` is set, also the bottleneck features (for
    a classification head on the encoder).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int],
        spatial_dims: int = 3,
        *,
        block: str = "double",
        encoder_blocks: int = 1,
        decoder_blocks: int = 1,
        downsample: str = "max",
        upsample: str = "transpose",
        block_kwargs: Mapping[str, Any] | None = None,
        encoder_kwargs: Sequence[Mapping[str, Any]] | None = None,
        decoder_kwargs: Sequence[Mapping[str, Any]] | None = None,
        decoder_block: str | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise LungtkError(f"a U-Net needs at least 2 levels of positive width, got {widths}")
        levels = len(widths)
        shared = dict(block_kwargs or {})
        enc_kw = [dict(k) for k in (encoder_kwargs or [{}] * levels)]
        dec_kw = [dict(k) for k in (decoder_kwargs or [{}] * (levels - 1))]
        if len(enc_kw) != levels or len(dec_kw) != levels - 1:
            raise LungtkError(f"{levels} levels need {levels} encoder and {levels - 1} decoder settings")
        self.encoder = nn.ModuleList(
            EncoderStage(
                in_channels if i == 0 else widths[i - 1],
                widths[i],
                spatial_dims,
                block=block,
                num_blocks=encoder_blocks,
                downsample=None if i == 0 else downsample,
                **{**shared, **enc_kw[i]},
            )
            for i in range(levels)
        )
        # Decoder level i goes from width[i + 1] up to width[i]; dec_kw is listed top (level 0) first.
        self.decoder = nn.ModuleList(
            DecoderStage(
                widths[i + 1],
                widths[i],
                widths[i],
                spatial_dims,
                block=decoder_block or block,
                num_blocks=decoder_blocks,
                upsample=upsample,
                **{**shared, **dec_kw[i]},
            )
            for i in reversed(range(levels - 1))
        )
        self.head = conv_type(spatial_dims)(widths[0], out_channels, 1)
        self.widths = widths
        self.spatial_dims = spatial_dims

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (2 per downsampling)."""
        return 2 ** (len(self.widths) - 1)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The bottleneck and the skips (top level first)."""
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips[-1], skips[:-1]

    def decode(self, bottleneck: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = bottleneck
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(x, skip)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % self.divisor for s in x.shape[2:]):
            raise LungtkError(
                f"input size {tuple(x.shape[2:])} is not a multiple of {self.divisor} in every dimension"
            )
        return self.decode(*self.features(x))
