"""Residual blocks: seed 000's (GroupNorm + ELU), NoduleNet's (BatchNorm + ReLU), and the residual unit of
seed 002 (MONAI's UNet with residual units)."""

from __future__ import annotations

import torch
from torch import nn

from lungtk.nn_blocks.attention import create_attention
from lungtk.nn_blocks.blocks.conv import ConvNormAct
from lungtk.nn_blocks.layers.factories import LayerSpec, conv_type, create_act, create_dropout, create_norm

GROUP_NORM_8: LayerSpec = ("group", {"num_groups": 8})


class ResidualBlock(nn.Module):
    """``act(residual(x) + shortcut(x))`` with residual = conv-norm-act-conv-norm[-attention].

    The defaults are seed 000's block (GroupNorm with 8 groups, ELU); :meth:`nodulenet` gives NoduleNet's
    (BatchNorm, ReLU). When the channels or the stride change, the shortcut is a 1^d convolution and a norm;
    otherwise it is the identity. An ``attention`` module (cbam, triplet, quartet) sits on the residual
    branch before the addition, as in the reference CBAM ResNet and seed 003's NoduleNet.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        spatial_dims: int = 3,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        norm: LayerSpec = GROUP_NORM_8,
        act: LayerSpec = "elu",
        attention: LayerSpec = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        conv = conv_type(spatial_dims)
        self.residual = nn.Sequential(
            ConvNormAct(
                in_channels,
                out_channels,
                spatial_dims,
                kernel_size=kernel_size,
                stride=stride,
                norm=norm,
                act=act,
                dropout=dropout,
            ),
            conv(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            create_norm(norm, spatial_dims, out_channels),
            create_attention(attention, out_channels, spatial_dims),
        )
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                conv(in_channels, out_channels, 1, stride=stride, bias=False),
                create_norm(norm, spatial_dims, out_channels),
            )
        self.act = create_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))

    @classmethod
    def nodulenet(
        cls, in_channels: int, out_channels: int | None = None, spatial_dims: int = 3, **kw: object
    ) -> ResidualBlock:
        """NoduleNet's PostRes block: BatchNorm and ReLU."""
        kw = {"norm": "batch", "act": "relu", **kw}
        return cls(in_channels, out_channels, spatial_dims, **kw)  # type: ignore[arg-type]


class ResidualUnit(nn.Module):
    """Seed 002's residual unit (MONAI's): ``subunits`` x (conv, norm, dropout, act), the first strided,
    plus a shortcut that is the identity, or a convolution when the shape changes (3^d when strided, 1^d
    otherwise). No activation after the addition."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        stride: int = 1,
        subunits: int = 2,
        norm: LayerSpec = "instance",
        act: LayerSpec = "prelu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        layers = []
        channels = in_channels
        for i in range(max(subunits, 1)):
            layers += [
                conv(channels, out_channels, 3, stride=stride if i == 0 else 1, padding=1, bias=True),
                create_norm(norm, spatial_dims, out_channels),
                create_dropout(dropout, spatial_dims),
                create_act(act),
            ]
            channels = out_channels
        self.residual = nn.Sequential(*layers)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            k = 3 if stride != 1 else 1
            self.shortcut = conv(in_channels, out_channels, k, stride=stride, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)
