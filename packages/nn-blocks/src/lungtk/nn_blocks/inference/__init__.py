"""Inference machinery that segmentation and detection share: sliding-window inference with Gaussian
blending, test-time augmentation with entropy uncertainty, and model ensembles (seed 002).

    >>> from functools import partial
    >>> from lungtk.nn_blocks.inference import sliding_window, tta_predict, ensemble
    >>> predict = partial(sliding_window, model, window=(64, 128, 128), overlap=0.5, batch_size=4)
    >>> logits = predict(image)                    # image (C, D, H, W) -> logits (K, D, H, W), CPU
    >>> probability, uncertainty = tta_predict(predict, image)             # 8 flips, entropy map
    >>> averaged = ensemble([partial(sliding_window, m, window=96) for m in models], image)
"""

from lungtk.nn_blocks.inference.affine import random_affines, warp
from lungtk.nn_blocks.inference.ensemble import ensemble
from lungtk.nn_blocks.inference.gaussian import gaussian_importance_map
from lungtk.nn_blocks.inference.probability import entropy, probabilities
from lungtk.nn_blocks.inference.sliding_window import sliding_window
from lungtk.nn_blocks.inference.tiling import window_starts
from lungtk.nn_blocks.inference.tta import TTAResult, all_flips, tta_predict

__all__ = [
    "TTAResult",
    "all_flips",
    "ensemble",
    "entropy",
    "gaussian_importance_map",
    "probabilities",
    "random_affines",
    "sliding_window",
    "tta_predict",
    "warp",
    "window_starts",
]
