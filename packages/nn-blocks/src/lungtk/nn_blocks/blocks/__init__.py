from lungtk.nn_blocks.blocks.conv import ConvNormAct, DilatedConvBlock, DoubleConv
from lungtk.nn_blocks.blocks.residual import ResidualBlock, ResidualUnit
from lungtk.nn_blocks.blocks.stages import BLOCKS, DecoderStage, EncoderStage, create_block

__all__ = [
    "BLOCKS",
    "ConvNormAct",
    "DecoderStage",
    "DilatedConvBlock",
    "DoubleConv",
    "EncoderStage",
    "ResidualBlock",
    "ResidualUnit",
    "create_block",
]
