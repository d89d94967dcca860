"""Seed 004's cascade (Wang et al., §2.3): the dilated 3D U-Net's soft foreground probability multiplied
into the crop (d = d_raw * s), then the 8-convolution classifier on the masked crop.

The segmentation network is the registered architecture ``dilated-unet`` (from lungtk-seg, looked up by
name, so lungtk-cls does not import lungtk-seg). With ``freeze_segmenter`` its weights do not learn and
its BatchNorm statistics stay as loaded (the paper's frozen-mask model (c)); without, both networks learn
together under L_cls + lambda L_seg (joint fine-tuning, model (d)). The output is (class logits,
segmentation logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.cls.networks.ggn_cnn import GGNClassifier


class GGNCascade(nn.Module):
    TINY: ClassVar[dict[str, Any]] = {
        "args": {"seg_widths": [4, 4, 8, 8], "widths": [2, 2, 4, 4], "hidden": 8, "patch": [16, 16, 16]},
        "input": (1, 16, 16, 16),
    }

    def __init__(
        self,
        seg_widths: Sequence[int] = (16, 32, 64, 128),
        widths: Sequence[int] = (16, 32, 64, 256),
        hidden: int = 256,
        patch: Sequence[int] = (32, 32, 32),
        classes: int = 3,
        dropout: float = 0.1,
        freeze_segmenter: bool = False,
    ) -> None:
        super().__init__()
        from lungtk.train.architectures import build_architecture

        self.segmenter = build_architecture("dilated-unet", {"widths": [int(w) for w in seg_widths]})
        self.classifier = GGNClassifier(widths, hidden, patch, classes, dropout)
        self.freeze_segmenter = bool(freeze_segmenter)
        if self.freeze_segmenter:
            self.segmenter.requires_grad_(False)

    def train(self, mode: bool = True) -> GGNCascade:
        super().train(mode)
        if self.freeze_segmenter:
            self.segmenter.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.segmenter(x)
        return self.classifier(x * torch.sigmoid(seg)), seg
