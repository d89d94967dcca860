"""lungtk.nn_blocks: the building blocks lungtk's networks are made of.

Layer factories (conv, norm, act, pool by name), convolution and residual blocks, encoder / decoder stages,
CBAM / Triplet / Quartet attention, Switchable Normalization, a configurable U-Net, segmentation and detection losses, and init
helpers. A block's first argument is its input channel count; ``spatial_dims`` picks 2D or 3D.

    >>> from lungtk.nn_blocks import ResidualBlock
    >>> block = ResidualBlock(32, 64, spatial_dims=3, attention="cbam")
"""

from lungtk.nn_blocks.attention import (
    CBAM,
    CrossDimensionAttention,
    QuartetAttention,
    TripletAttention,
    create_attention,
)
from lungtk.nn_blocks.blocks import (
    ConvNormAct,
    DecoderStage,
    DilatedConvBlock,
    DoubleConv,
    EncoderStage,
    ResidualBlock,
    ResidualUnit,
    create_block,
)
from lungtk.nn_blocks.inference import TTAResult, ensemble, sliding_window, tta_predict
from lungtk.nn_blocks.init import he_init_, prior_bias_
from lungtk.nn_blocks.layers import (
    MaskedPool,
    SwitchNorm,
    conv_type,
    create_act,
    create_dropout,
    create_norm,
    create_pool,
)
from lungtk.nn_blocks.losses import (
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    JointSegClsLoss,
    RecallWeightedDiceLoss,
    TopKBCEDiceLoss,
    WeightedCrossEntropyLoss,
    inverse_frequency_weights,
)
from lungtk.nn_blocks.unet import UNet

__all__ = [
    "CBAM",
    "ConvNormAct",
    "CrossDimensionAttention",
    "DecoderStage",
    "DiceLoss",
    "DilatedConvBlock",
    "DoubleConv",
    "EncoderStage",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "JointSegClsLoss",
    "MaskedPool",
    "QuartetAttention",
    "RecallWeightedDiceLoss",
    "ResidualBlock",
    "ResidualUnit",
    "SwitchNorm",
    "TTAResult",
    "TopKBCEDiceLoss",
    "TripletAttention",
    "UNet",
    "WeightedCrossEntropyLoss",
    "conv_type",
    "create_act",
    "create_attention",
    "create_block",
    "create_dropout",
    "create_norm",
    "create_pool",
    "ensemble",
    "he_init_",
    "inverse_frequency_weights",
    "prior_bias_",
    "sliding_window",
    "tta_predict",
]
