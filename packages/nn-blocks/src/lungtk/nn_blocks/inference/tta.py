"""Test-time augmentation: the mean probability over flipped (and optionally affinely warped) copies of
an image, each prediction mapped back onto the original grid, and the entropy of that mean as a per-voxel
uncertainty map (seed 002, after Wang et al. 2018).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from lungtk.core import LungtkError
from lungtk.nn_blocks.inference._checks import choice, image_ndim, is_int, non_negative_number
from lungtk.nn_blocks.inference.affine import coverage, random_affines, warp
from lungtk.nn_blocks.inference.probability import ACTIVATIONS, entropy, probabilities

PredictFn = Callable[[torch.Tensor], torch.Tensor | np.ndarray]


class TTAResult(NamedTuple):
    probability: torch.Tensor
    """Mean probability, (K, *spatial)."""
    entropy: torch.Tensor
    """Entropy of the mean in nats: (K, *spatial) for sigmoid, (1, *spatial) for softmax."""


def all_flips(ndim: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes 0..ndim-1 (2**ndim of them), the empty one (no flip) first."""
    axes = range(ndim)
    return [c for r in range(ndim + 1) for c in itertools.combinations(axes, r)]


def tta_predict(
    predict_fn: PredictFn,
    image: np.ndarray | torch.Tensor,
    *,
    flips: Sequence[Sequence[int]] | None = None,
    affine: int = 0,
    rotation: float = 10.0,
    scale: float = 0.1,
    seed: int = 0,
    activation: str = "sigmoid",
) -> TTAResult:
    """Mean probability and entropy over test-time augmented predictions of ``image`` (C, *spatial).

    ``predict_fn`` maps an image tensor (C, *spatial) to logits (K, *spatial) of the same spatial size,
    e.g. ``functools.partial(sliding_window, model, window=(64, 128, 128))``; ``activation`` turns them
    into probabilities (``"sigmoid"`` per channel, ``"softmax"`` over the channels).

    - ``flips``: the flips to predict on, each a set of spatial axes (0 = the first spatial axis); the
      default is all 2**ndim subsets, the empty one (no flip) included. ``[()]`` predicts once, plainly.
      Each prediction is flipped back before it is averaged.
    - ``affine``: how many randomly warped copies to add: each rotated by up to +-``rotation`` degrees
      in the (row, col) plane (about the index axis) and scaled by 1 +- ``scale``, drawn from ``seed``.
      The input is warped with ``grid_sample`` (edge values fill the borders), the probabilities are
      warped back by the inverse matrix; interpolation makes this only approximately invertible, and a
      voxel that a warp moved out of the field of view is averaged over the predictions that still see it.

    Probabilities are averaged; the entropy is that of the mean: H = -p log p - (1 - p) log(1 - p) per
    channel (sigmoid) or -sum_k p_k log p_k (softmax).
    """
    x = torch.as_tensor(image)
    ndim = image_ndim(tuple(x.shape))
    flips = all_flips(ndim) if flips is None else _check_flips(flips, ndim)
    if not (is_int(affine) and affine >= 0):
        raise LungtkError(f"affine {affine!r}: use the number of random affine samples, 0 or more")
    rotation = non_negative_number(rotation, "rotation")
    scale = non_negative_number(scale, "scale")
    if scale >= 1:
        raise LungtkError(f"scale {scale!r}: use a fraction in [0, 1), e.g. 0.1 for 1 +- 10 %")
    choice(activation, ACTIVATIONS, "activation")

    total: torch.Tensor | None = None
    count: torch.Tensor | float = 0.0
    for axes in flips:
        dims = [a + 1 for a in axes]
        p = _predict(predict_fn, x.flip(dims) if dims else x, x.shape, activation)
        p = p.flip(dims) if dims else p
        total = p if total is None else total + p
        count = count + 1.0
    for matrix in random_affines(affine, ndim, rotation, scale, seed):
        p = _predict(predict_fn, warp(x, matrix), x.shape, activation)
        inverse = torch.linalg.inv(matrix)
        seen = coverage(inverse, tuple(x.shape[1:])).to(p.device)
        total = total + warp(p, inverse) * seen  # type: ignore[operator]
        count = count + seen
    mean = total / count  # type: ignore[operator]
    return TTAResult(mean, entropy(mean, activation))


def _check_flips(flips: Sequence[Sequence[int]], ndim: int) -> list[tuple[int, ...]]:
    checked = []
    for axes in flips:
        axes = tuple(axes)
        ok = all(is_int(a) and 0 <= a < ndim for a in axes)
        if not ok or len(set(axes)) != len(axes):
            raise LungtkError(
                f"flip {axes!r}: use distinct spatial axes in 0..{ndim - 1}, e.g. (0,) or (1, 2); () is no flip"
            )
        checked.append(tuple(int(a) for a in axes))
    if not checked:
        raise LungtkError("flips []: give at least one flip, e.g. [()] for the plain prediction")
    return checked


def _predict(predict_fn: PredictFn, x: torch.Tensor, shape: torch.Size, activation: str) -> torch.Tensor:
    logits = torch.as_tensor(predict_fn(x))
    if logits.ndim != len(shape) or tuple(logits.shape[1:]) != tuple(shape[1:]):
        raise LungtkError(
            f"predict_fn returned shape {tuple(logits.shape)} for an image of {tuple(shape)}: it must return "
            "logits (K, *spatial) of the image's spatial size"
        )
    return probabilities(logits.float(), activation)
