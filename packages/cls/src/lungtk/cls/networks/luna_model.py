"""Seed 001's nodule / malignancy classifier (``LunaModel`` of Stevens et al., as Venturini uses it).

A BatchNorm on the input, four blocks of two 3^3 convolutions with ReLU and a 2^3 max-pool, widths w, 2w,
4w, 8w (w = 8 in the paper: 8/16/32/64), and one linear layer on the flattened map (64 x 2 x 3 x 3 = 1152
for the paper's 32 x 48 x 48 crops). Weights He-normal with fan-out as the paper says, biases zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks import DoubleConv, he_init_

BLOCKS = 4


class LunaModel(nn.Module):
    """(B, 1, I, R, C) -> (B, classes) logits; ``patch`` is (I, R, C), each divisible by 16."""

    TINY: ClassVar[dict[str, Any]] = {"args": {"width": 2, "patch": [16, 16, 16]}, "input": (1, 16, 16, 16)}

    def __init__(
        self, width: int = 8, patch: Sequence[int] = (32, 48, 48), classes: int = 2, trainable: int = 0
    ) -> None:
        """``trainable``: 0, every layer learns; k, only the last k of (block 1..4, head) do, as seed 001
        fine-tunes its malignancy model from the nodule model (k = 2: block 4 and the head)."""
        super().__init__()
        patch = [int(p) for p in patch]
        if len(patch) != 3 or any(p < 2**BLOCKS or p % 2**BLOCKS for p in patch):
            raise LungtkError(f"LunaModel: patch {patch} must be 3 sizes, each a multiple of {2**BLOCKS}")
        self.input_norm = nn.BatchNorm3d(1)
        widths = [width * 2**i for i in range(BLOCKS)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip([1, *widths[:-1]], widths, strict=True):
            layers += [DoubleConv(c_in, c_out, 3, norm=None, act="relu"), nn.MaxPool3d(2)]
        self.features = nn.Sequential(*layers)
        cells = 1
        for p in patch:
            cells *= p // 2**BLOCKS
        self.head = nn.Linear(widths[-1] * cells, classes)
        he_init_(self)
        if trainable:
            stages = [self.input_norm, *[self.features[2 * i : 2 * i + 2] for i in range(BLOCKS)], self.head]
            for stage in stages[: len(stages) - int(trainable)]:
                stage.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened features the head sees (seed 000's Random Forest baseline uses such features)."""
        return self.features(self.input_norm(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))
