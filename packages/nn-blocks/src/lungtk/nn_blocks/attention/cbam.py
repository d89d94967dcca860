"""CBAM, the Convolutional Block Attention Module (Woo et al., ECCV 2018), for 2D and 3D (seeds 000, 003).

A channel gate (a shared MLP with reduction r over the average- and max-pooled descriptors, summed, then a
sigmoid) followed by a spatial gate (a k^d convolution over the [max, mean] channel pools, then a
sigmoid). Parameters: 2*C*(C/r) + C/r + C (the MLP with biases) + 2*k^d + 2 (the gate's conv and norm).
"""

from __future__ import annotations

import torch
from torch import nn

from lungtk.nn_blocks.layers.factories import LayerSpec, conv_type, create_act, create_norm


class ChannelGate(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, act: LayerSpec = "relu") -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), create_act(act), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        logits = self.mlp(x.mean(dim=dims)) + self.mlp(x.amax(dim=dims))
        return x * torch.sigmoid(logits).reshape(*logits.shape, *(1,) * len(dims))


def channel_pool(x: torch.Tensor) -> torch.Tensor:
    """[max, mean] over the channel axis: (N, C, ...) -> (N, 2, ...). Triplet attention calls it Z-pool."""
    return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)


class SpatialGate(nn.Module):
    """Sigmoid of a k^d convolution (and norm) over the channel pools; multiplies the input."""

    def __init__(self, spatial_dims: int, kernel_size: int = 7, norm: LayerSpec = "batch") -> None:
        super().__init__()
        self.conv = conv_type(spatial_dims)(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = create_norm(norm, spatial_dims, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.norm(self.conv(channel_pool(x))))


class CBAM(nn.Module):
    """Channel attention, then spatial attention. ``act`` is the MLP's activation (seed 000 prefers ELU)."""

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 3,
        reduction: int = 16,
        kernel_size: int = 7,
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction, act)
        self.spatial = SpatialGate(spatial_dims, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
