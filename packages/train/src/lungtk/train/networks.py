"""Architectures the engine itself provides to model files.

``unet``: nn-blocks' configurable U-Net (:class:`lungtk.nn_blocks.unet.UNet`) with He initialisation; its
arguments are the U-Net's keyword arguments (JSON values). The seed papers' networks are registered by the
packages of their tasks (seg, cls, detect) in the same ``lungtk.architectures`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lungtk.nn_blocks import he_init_
from lungtk.nn_blocks.unet import UNet


def unet(
    in_channels: int = 1,
    out_channels: int = 1,
    widths: Sequence[int] = (32, 64, 128, 256),
    spatial_dims: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """nnU-Net's plain U-Net by default: two conv-InstanceNorm-LeakyReLU layers per level, max-pooling,
    transposed convolutions; ``kwargs`` go to :class:`UNet` (block, block_kwargs, ...)."""
    kwargs.setdefault("block_kwargs", {"norm": "instance", "act": "leakyrelu"})
    model = UNet(in_channels, out_channels, list(widths), spatial_dims, **kwargs)
    return he_init_(model, nonlinearity="leaky_relu")


unet.TINY = {"args": {"widths": (4, 8)}, "input": (1, 16, 16, 16)}  # type: ignore[attr-defined]
"""A configuration and one sample's input shape for smoke tests (every architecture declares one)."""
