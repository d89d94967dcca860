"""Seed 000's residual 3D U-Net with the joint texture head (Rassadin, LNDb 2020).

Five levels of residual blocks (GroupNorm with 8 groups, ELU), widths ``width * 2**level`` (32 in the
paper), max-pool down, transposed-convolution up with concatenated skips, optional 3D CBAM in every block,
and a classification head on the encoder's bottleneck: global average pool -> FC -> ELU -> FC -> ELU ->
FC (GGO / part-solid / solid), dropout before each hidden FC (0.6 in the paper's validation model).

``texture_pool`` says what the head reads. ``bottleneck`` is the paper's: the bottleneck's global average.
``mask`` is lungtk's, for small networks: the mean and the maximum of the first level's features under
the nodule's mask. A texture is a property of the nodule's own voxels (ground glass at -600 HU, a solid
core), and a small network's bottleneck mostly encodes the patch's surroundings. In the 32^3 CPU
configuration trained on phantoms, the pooled bottleneck hardly separates the three textures (balanced
accuracy 0.47 for a logistic regression on the calibration phantoms; the trained head called every
nodule solid), while the first level's features under the nodule's mask reach 0.88. The mask is the
nodule the network segmented, in training (``forward(x, near=target)``: its own segmentation near the
target's nodule) as at inference (:meth:`ResUNet.texture_logits` under the segmenter's centre component).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.core.labels import TEXTURES
from lungtk.nn_blocks import MaskedPool, he_init_
from lungtk.nn_blocks.unet import UNet

TEXTURE_POOLS = ("bottleneck", "mask")
NEAR_VOXELS = 2


class ResUNet(nn.Module):
    """``forward(x, mask=None, near=None)`` -> segmentation logits (B, 1, *spatial), and texture logits
    (B, 3) when the head is on (``texture_classes > 0``) as ``(seg, texture)``."""

    TINY: ClassVar[dict[str, Any]] = {"args": {"width": 4, "levels": 3}, "input": (1, 16, 16, 16)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        levels: int = 5,
        *,
        attention: str | None = None,
        texture_classes: int = len(TEXTURES),
        head_hidden: Sequence[int] = (256, 128),
        head_dropout: float = 0.6,
        texture_pool: str = "bottleneck",
    ) -> None:
        super().__init__()
        if texture_pool not in TEXTURE_POOLS:
            raise ValueError(f"texture_pool={texture_pool!r}: use one of {', '.join(TEXTURE_POOLS)}")
        self.texture_pool = texture_pool
        groups = math.gcd(8, width)  # GroupNorm(8) as the paper; fewer groups when a tiny width needs it
        self.unet = UNet(
            in_channels,
            1,
            [width * 2**i for i in range(levels)],
            3,
            block="residual",
            block_kwargs={"norm": ("group", {"num_groups": groups}), "act": "elu", "attention": attention},
        )
        self.texture_head: nn.Module | None = None
        self.masked_pool = MaskedPool() if texture_pool == "mask" else None
        if texture_classes > 0:
            layers: list[nn.Module] = (
                [nn.AdaptiveAvgPool3d(1), nn.Flatten()] if self.masked_pool is None else []
            )
            channels = self.unet.widths[-1] if self.masked_pool is None else 2 * self.unet.widths[0]
            for hidden in head_hidden:
                layers += [nn.Dropout(head_dropout), nn.Linear(channels, hidden), nn.ELU()]
                channels = hidden
            layers.append(nn.Linear(channels, texture_classes))
            self.texture_head = nn.Sequential(*layers)
        he_init_(self, nonlinearity="relu")

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, near: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """With ``texture_pool="mask"`` the head reads the features under ``mask``; or, given ``near``
        (training: the target), under the network's own segmentation (probability 0.5 or more) within
        ``NEAR_VOXELS`` of ``near``, the mask it will read at inference (``near`` itself where that is
        empty); or, given neither, under the network's probability."""
        bottleneck, skips = self.unet.features(x)
        seg = self.unet.decode(bottleneck, skips)
        if self.texture_head is None:
            return seg
        if self.masked_pool is not None and mask is None:
            own = torch.sigmoid(seg.detach())
            if near is None:
                mask = own
            else:
                reach = 2 * NEAR_VOXELS + 1
                around = nn.functional.max_pool3d(near.to(own.dtype), reach, 1, NEAR_VOXELS) > 0
                found = (own >= 0.5) & around
                some = found.flatten(1).any(1).view(-1, *([1] * (found.dim() - 1)))
                mask = torch.where(some, found.to(own.dtype), near.to(own.dtype))
        return seg, self._texture(bottleneck, skips, mask)

    def texture_logits(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The texture head's logits for inputs ``x`` whose nodules are ``mask`` (B, 1, *spatial)."""
        if self.texture_head is None:
            raise ValueError("this network has no texture head (texture_classes=0)")
        bottleneck, skips = self.unet.features(x)
        return self._texture(bottleneck, skips, mask)

    def _texture(
        self, bottleneck: torch.Tensor, skips: list[torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        assert self.texture_head is not None
        if self.masked_pool is None:
            return self.texture_head(bottleneck)
        assert mask is not None
        return self.texture_head(self.masked_pool(skips[0] if skips else bottleneck, mask))
