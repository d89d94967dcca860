from lungtk.nn_blocks.losses.classification import (
    FocalLoss,
    JointSegClsLoss,
    WeightedCrossEntropyLoss,
    inverse_frequency_weights,
)
from lungtk.nn_blocks.losses.dice import (
    DiceLoss,
    GeneralizedDiceLoss,
    RecallWeightedDiceLoss,
    negative_squared_dice,
)
from lungtk.nn_blocks.losses.topk import TopKBCEDiceLoss, topk_bce

__all__ = [
    "DiceLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "JointSegClsLoss",
    "RecallWeightedDiceLoss",
    "TopKBCEDiceLoss",
    "WeightedCrossEntropyLoss",
    "inverse_frequency_weights",
    "negative_squared_dice",
    "topk_bce",
]
