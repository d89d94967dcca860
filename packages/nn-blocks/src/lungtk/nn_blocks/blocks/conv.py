"""Convolution blocks: conv -> norm -> act, the plain U-Net double convolution, seed 004's dilated block."""

from __future__ import annotations

from torch import nn

from lungtk.nn_blocks.layers.factories import LayerSpec, conv_type, create_act, create_dropout, create_norm


class ConvNormAct(nn.Sequential):
    """A k^d convolution ('same' padding for odd k, any dilation), a norm, dropout and an activation.

    The convolution has a bias only when there is no norm after it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
        dropout: float = 0.0,
    ) -> None:
        conv = conv_type(spatial_dims)(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=norm in (None, "none"),
        )
        super().__init__(
            conv,
            create_norm(norm, spatial_dims, out_channels),
            create_dropout(dropout, spatial_dims),
            create_act(act),
        )


class DoubleConv(nn.Sequential):
    """The plain U-Net block: two 3^d conv-norm-act layers (Ronneberger et al.)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        stride: int = 1,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            ConvNormAct(
                in_channels, out_channels, spatial_dims, stride=stride, norm=norm, act=act, dropout=dropout
            ),
            ConvNormAct(out_channels, out_channels, spatial_dims, norm=norm, act=act, dropout=dropout),
        )


class DilatedConvBlock(ConvNormAct):
    """Seed 004's block: a 3^d convolution with ``dilation`` (padding keeps the size), BatchNorm, ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 3,
        *,
        dilation: int = 1,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__(in_channels, out_channels, spatial_dims, dilation=dilation, norm=norm, act=act)
