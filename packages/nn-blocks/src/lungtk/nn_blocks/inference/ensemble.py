"""Model ensembles: the (weighted) mean of several models' logits or probabilities (seed 002: the plain
average, and two models weighted w and 1 - w)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from lungtk.core import LungtkError
from lungtk.nn_blocks.inference._checks import choice, is_real
from lungtk.nn_blocks.inference.probability import ACTIVATIONS, probabilities

MODES = ("logits", "probabilities")
Member = torch.Tensor | np.ndarray | Callable[[torch.Tensor], torch.Tensor | np.ndarray]


def ensemble(
    members: Sequence[Member],
    image: torch.Tensor | np.ndarray | None = None,
    *,
    weights: Sequence[float] | None = None,
    mode: str = "logits",
    activation: str = "sigmoid",
) -> torch.Tensor:
    """The weighted mean of the members' logits (``mode="logits"``) or of their probabilities
    (``mode="probabilities"``, through ``activation``: sigmoid per channel or softmax over channels).

    Each member is a model's logits (K, *spatial), or a predict function that maps ``image`` to them,
    e.g. a ``functools.partial`` of ``sliding_window``; functions are called one after another so that
    only one member's output is held at a time besides the running sum. ``weights`` (default: all equal)
    must be non-negative and not all zero; they are normalised to sum to 1. Returns float32 on the
    members' device. ``functools.partial(ensemble, fns, mode="logits")`` is itself a predict function
    for ``tta_predict``.
    """
    if len(members) == 0:
        raise LungtkError("ensemble of no members: give at least one prediction or predict function")
    mode = choice(mode, MODES, "mode")
    choice(activation, ACTIVATIONS, "activation")
    normalised = _normalised(weights, len(members))

    total: torch.Tensor | None = None
    for i, (member, weight) in enumerate(zip(members, normalised, strict=True)):
        if callable(member):
            if image is None:
                raise LungtkError(f"ensemble member {i} is a predict function: pass the image to run it on")
            member = member(torch.as_tensor(image))
        values = torch.as_tensor(member).float()
        if mode == "probabilities":
            values = probabilities(values, activation)
        if total is not None and values.shape != total.shape:
            raise LungtkError(
                f"ensemble member {i} has shape {tuple(values.shape)}, member 0 {tuple(total.shape)}: "
                "members must predict the same shape"
            )
        total = values * weight if total is None else total.add_(values, alpha=weight)
    assert total is not None
    return total


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1 / count] * count
    values = list(weights)
    if len(values) != count:
        raise LungtkError(f"ensemble weights {values!r}: give one weight per member ({count})")
    if not all(is_real(w) and w >= 0 for w in values) or sum(values) == 0:
        raise LungtkError(f"ensemble weights {values!r}: use non-negative numbers, not all zero")
    total = sum(values)
    return [float(w) / total for w in values]
