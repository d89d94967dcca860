"""Logits to probabilities, and the entropy of a probability map (the TTA uncertainty).

``activation="sigmoid"``: each of the K channels is its own binary problem; ``"softmax"``: the K channels
are exclusive classes (softmax over the channel axis, axis 0 of a (K, *spatial) map).
"""

from __future__ import annotations

import torch

from lungtk.nn_blocks.inference._checks import choice

ACTIVATIONS = ("sigmoid", "softmax")


def probabilities(logits: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Probabilities (K, *spatial) from channel-first logits (K, *spatial)."""
    choice(activation, ACTIVATIONS, "activation")
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=0)


def entropy(probability: torch.Tensor, activation: str = "sigmoid") -> torch.Tensor:
    """Per-voxel entropy in nats, with 0 log 0 = 0.

    sigmoid: H = -p log p - (1 - p) log(1 - p) per channel, shape (K, *spatial);
    softmax: H = -sum_k p_k log p_k over the channels, shape (1, *spatial).
    """
    choice(activation, ACTIVATIONS, "activation")
    if activation == "sigmoid":
        return torch.special.entr(probability) + torch.special.entr(1 - probability)
    return torch.special.entr(probability).sum(dim=0, keepdim=True)
