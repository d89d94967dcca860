"""Encoder and decoder stages that U-Nets and detectors stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks.blocks.conv import DilatedConvBlock, DoubleConv
from lungtk.nn_blocks.blocks.residual import ResidualBlock, ResidualUnit
from lungtk.nn_blocks.layers.factories import _pick, conv_type, create_pool

BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "double": DoubleConv,
    "residual": ResidualBlock,
    "nodulenet": ResidualBlock.nodulenet,
    "unit": ResidualUnit,
    "dilated": DilatedConvBlock,
}


def create_block(
    block: str | Callable[..., nn.Module], in_channels: int, out_channels: int, spatial_dims: int, **kw: Any
) -> nn.Module:
    """A block by name (double, residual, nodulenet, unit, dilated) or any ``f(in, out, spatial_dims, **kw)``."""
    if callable(block):
        return block(in_channels, out_channels, spatial_dims, **kw)
    factory, _ = _pick("block", BLOCKS, block)
    return factory(in_channels, out_channels, spatial_dims, **kw)


class EncoderStage(nn.Module):
    """Downsample (max-pool by 2, or a stride-2 first block, or nothing), then ``num_blocks`` blocks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        block: str | Callable[..., nn.Module] = "residual",
        num_blocks: int = 1,
        downsample: str | None = "max",
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        if downsample not in ("max", "stride", None):
            raise LungtkError(f"downsample must be 'max', 'stride' or None, got {downsample!r}")
        self.down = (
            create_pool(("max", {"kernel_size": 2}), spatial_dims) if downsample == "max" else nn.Identity()
        )
        blocks = []
        for i in range(num_blocks):
            kw = dict(block_kwargs)
            if i == 0 and downsample == "stride":
                kw["stride"] = 2
            blocks.append(
                create_block(block, in_channels if i == 0 else out_channels, out_channels, spatial_dims, **kw)
            )
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


class DecoderStage(nn.Module):
    """Upsample by 2 to ``out_channels`` (transposed conv, or interpolation + 1^d conv), concatenate the skip
    connection, then ``num_blocks`` blocks."""

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        block: str | Callable[..., nn.Module] = "residual",
        num_blocks: int = 1,
        upsample: str = "transpose",
        **block_kwargs: Any,
    ) -> None:
        super().__init__()
        if upsample == "transpose":
            self.up: nn.Module = conv_type(spatial_dims, transposed=True)(
                in_channels, out_channels, 2, stride=2
            )
        elif upsample in ("nearest", "linear"):
            mode = (
                "nearest"
                if upsample == "nearest"
                else {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
            )
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode=mode), conv_type(spatial_dims)(in_channels, out_channels, 1)
            )
        else:
            raise LungtkError(f"upsample must be 'transpose', 'linear' or 'nearest', got {upsample!r}")
        self.blocks = nn.Sequential(
            *(
                create_block(
                    block,
                    out_channels + skip_channels if i == 0 else out_channels,
                    out_channels,
                    spatial_dims,
                    **block_kwargs,
                )
                for i in range(num_blocks)
            )
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:
            raise ValueError(
                f"decoder: upsampled {tuple(x.shape[2:])} does not match the skip {tuple(skip.shape[2:])}"
            )
        return self.blocks(torch.cat([x, skip], dim=1))
