"""NoduleNet's three heads on FeatureNet's maps (widths are the reference's times ``width``).

- ``RpnHead``: conv 1^3 (128 -> 64) + ReLU, then per anchor one objectness logit and 4 box deltas
  (z, y, x, side; the reference's 6 with h = w = d for its cubic anchors), flattened in anchor order
  (z, y, x, anchor) as ``(B, N)`` and ``(B, N, 4)``.
- ``RcnnHead``: the 7^3 ROI crops of forw2 (64 channels) -> FC 512 -> ReLU -> FC 256 -> ReLU -> 2 class
  logits (background, nodule) and 4 deltas (one class: the reference's per-class deltas of its only
  foreground class).
- ``MaskHead``: per region, the stride-4 map's crop upsampled (x2, trilinear) + conv 3^3 -> 64, joined with
  the stride-2 crop (forw1) -> conv -> 64, upsampled + conv -> 64, joined with the image crop -> conv -> 64,
  conv 1^3 -> one logit per voxel of the region's window (InstanceNorm + ReLU after each conv), as the
  reference's; it runs region by region since windows differ in size.
"""

from __future__ import annotations

import torch
from torch import nn

from lungtk.detect.feature_net import Features


def _conv_in_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1), nn.InstanceNorm3d(c_out, affine=True), nn.ReLU()
    )


class RpnHead(nn.Module):
    def __init__(self, in_channels: int, hidden: int, anchors: int) -> None:
        super().__init__()
        self.anchors = anchors
        self.conv = nn.Sequential(nn.Conv3d(in_channels, hidden, 1), nn.ReLU())
        self.logits = nn.Conv3d(hidden, anchors, 1)
        self.deltas = nn.Conv3d(hidden, 4 * anchors, 1)

    def forward(self, f4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(f4)
        b, _, d, hh, w = h.shape
        logits = self.logits(h).permute(0, 2, 3, 4, 1).reshape(b, -1)
        deltas = self.deltas(h).reshape(b, self.anchors, 4, d, hh, w).permute(0, 3, 4, 5, 1, 2)
        return logits, deltas.reshape(b, -1, 4)


class RcnnHead(nn.Module):
    def __init__(self, in_channels: int, crop: int, hidden: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * crop**3, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
        )
        self.logits = nn.Linear(hidden[1], 2)
        self.deltas = nn.Linear(hidden[1], 4)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(crops)
        return self.logits(h), self.deltas(h)


class MaskHead(nn.Module):
    def __init__(self, f4_channels: int, f2_channels: int, hidden: int) -> None:
        super().__init__()
        self.up2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="trilinear"), _conv_in_relu(f4_channels, hidden)
        )
        self.back2 = _conv_in_relu(hidden + f2_channels, hidden)
        self.up3 = nn.Sequential(nn.Upsample(scale_factor=2, mode="trilinear"), _conv_in_relu(hidden, hidden))
        self.back3 = _conv_in_relu(hidden + 1, hidden)
        self.logits = nn.Conv3d(hidden, 1, 1)

    def forward(self, features: Features, windows: torch.Tensor) -> list[torch.Tensor]:
        """Logits (d, h, w) for each window row (patch, z0, y0, x0, z1, y1, x1), ends multiples of 4."""
        out = []
        for b, z0, y0, x0, z1, y1, x1 in windows.tolist():
            f4 = features.f4[b : b + 1, :, z0 // 4 : z1 // 4, y0 // 4 : y1 // 4, x0 // 4 : x1 // 4]
            f2 = features.f2[b : b + 1, :, z0 // 2 : z1 // 2, y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
            image = features.image[b : b + 1, :, z0:z1, y0:y1, x0:x1]
            h = self.back2(torch.cat([self.up2(f4), f2], dim=1))
            h = self.back3(torch.cat([self.up3(h), image], dim=1))
            out.append(self.logits(h)[0, 0])
        return out
