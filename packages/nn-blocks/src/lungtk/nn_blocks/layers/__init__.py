from lungtk.nn_blocks.layers.factories import (
    LayerSpec,
    conv_type,
    create_act,
    create_dropout,
    create_norm,
    create_pool,
)
from lungtk.nn_blocks.layers.masked_pool import MaskedPool
from lungtk.nn_blocks.layers.switch_norm import SwitchNorm

__all__ = [
    "LayerSpec",
    "MaskedPool",
    "SwitchNorm",
    "conv_type",
    "create_act",
    "create_dropout",
    "create_norm",
    "create_pool",
]
