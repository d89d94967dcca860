"""Seed 004's GGN pathology classifier (Wang et al., Fig. 2a).

Eight 3^3 convolutions with BatchNorm and ReLU in pairs (16, 16 | 32, 32 | 64, 64 | 256, 256 in the
paper), a 2^3 max-pool after each of the first three pairs, then three fully connected layers (256, 256,
classes) with dropout 0.1 after the first two. Input: one 32^3 crop, optionally masked by the
segmentation network's soft mask (the cascade, :mod:`lungtk.cls.cascade`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks import DoubleConv, he_init_

POOLS = 3


class GGNClassifier(nn.Module):
    """(B, 1, D, H, W) -> (B, classes) logits; ``patch`` sizes divisible by 8."""

    TINY: ClassVar[dict[str, Any]] = {
        "args": {"widths": [2, 2, 4, 4], "hidden": 8, "patch": [16, 16, 16], "classes": 3},
        "input": (1, 16, 16, 16),
    }

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 256),
        hidden: int = 256,
        patch: Sequence[int] = (32, 32, 32),
        classes: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        widths, patch = [int(w) for w in widths], [int(p) for p in patch]
        if len(widths) != POOLS + 1:
            raise LungtkError(f"GGNClassifier: give {POOLS + 1} widths, got {widths}")
        if len(patch) != 3 or any(p < 2**POOLS or p % 2**POOLS for p in patch):
            raise LungtkError(f"GGNClassifier: patch {patch} must be 3 sizes, each a multiple of {2**POOLS}")
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([1, *widths[:-1]], widths, strict=True)):
            layers.append(DoubleConv(c_in, c_out, 3, norm="batch", act="relu"))
            if i < POOLS:
                layers.append(nn.MaxPool3d(2))
        self.features = nn.Sequential(*layers)
        cells = 1
        for p in patch:
            cells *= p // 2**POOLS
        self.head = nn.Sequential(
            nn.Linear(widths[-1] * cells, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )
        he_init_(self)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))
