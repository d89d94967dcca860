"""Cross-dimension attention: Triplet attention for 2D (Misra et al., WACV 2021) and its 3D extension,
Quartet attention (QAM; Hong et al. 2021, Zhong et al. 2023; seed 003).

Each branch brings one axis into the channel position (the identity branch keeps the channels there),
Z-pools over it ([max, mean]), runs a k^d convolution and a sigmoid, scales the tensor and puts the axes
back; the output is the mean of the branches. With d spatial axes there are d + 1 branches, each holding
2*k^d conv weights and a 1-channel norm (2 parameters): 2D Triplet has 6k^2 + 6 parameters and 3D Quartet
8k^3 + 8, whatever the channel count.
"""

from __future__ import annotations

import torch
from torch import nn

from lungtk.nn_blocks.attention.cbam import SpatialGate
from lungtk.nn_blocks.layers.factories import LayerSpec


class CrossDimensionAttention(nn.Module):
    def __init__(self, spatial_dims: int, kernel_size: int = 7, norm: LayerSpec = "batch") -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        # Branch 0: channels stay; branch a (1..d): spatial axis a+1 swaps with the channel axis.
        self.gates = nn.ModuleList(
            SpatialGate(spatial_dims, kernel_size, norm) for _ in range(spatial_dims + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"{type(self).__name__} expects {self.spatial_dims} spatial dims, got shape {tuple(x.shape)}"
            )
        out = self.gates[0](x)
        for axis, gate in enumerate(self.gates[1:], start=2):
            out = out + gate(x.transpose(1, axis)).transpose(1, axis)
        return out / len(self.gates)


class TripletAttention(CrossDimensionAttention):
    """Triplet attention for (N, C, H, W): the (C, W), (C, H) and (H, W) interactions.

    ``channels`` is accepted for a uniform block signature; the module's size does not depend on it.
    """

    def __init__(self, channels: int | None = None, spatial_dims: int = 2, kernel_size: int = 7) -> None:
        if spatial_dims != 2:
            raise ValueError("TripletAttention is the 2D module; use QuartetAttention for 3D")
        super().__init__(2, kernel_size)


class QuartetAttention(CrossDimensionAttention):
    """Quartet attention for (N, C, D, H, W): the (C, D), (C, H), (C, W) and (D, H, W) interactions."""

    def __init__(self, channels: int | None = None, spatial_dims: int = 3, kernel_size: int = 7) -> None:
        if spatial_dims != 3:
            raise ValueError("QuartetAttention is the 3D module; use TripletAttention for 2D")
        super().__init__(3, kernel_size)
