"""Regions of interest on feature maps: NoduleNet's ROI crop for the RCNN head and the voxel windows of
its mask head.

``roi_crop``: each region (patch, z, y, x, side in input voxels) is cut out of a stride-``s`` feature map
(its corners divided by the stride, rounded outwards, clipped to the map, at least one voxel) and
max-pooled to ``size``^3 (the reference's crop + adaptive max pooling, 7^3).

``mask_windows``: each region's integer voxel box, widened to multiples of 4 (so the stride-2 and stride-4
maps cut at whole voxels) and clipped to the input, as the reference's ``ext2factor`` + ``clip_boxes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MULTIPLE = 4


def with_patch_index(per_patch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Region rows (R, 5) = (patch, z, y, x, side) from each patch's cubes (K, 4)."""
    rows = [
        torch.cat([torch.full((len(c), 1), float(b), device=c.device), c.float()], 1)
        for b, c in enumerate(per_patch)
    ]
    return torch.cat(rows) if rows else torch.zeros(0, 5)


def roi_crop(features: torch.Tensor, rois: torch.Tensor, stride: int, size: int = 7) -> torch.Tensor:
    """(R, C, size, size, size) crops of ``features`` (B, C, D, H, W) at ``rois`` (R, 5)."""
    if len(rois) == 0:
        return features.new_zeros((0, features.shape[1], size, size, size))
    shape = torch.as_tensor(features.shape[2:], device=rois.device)
    half = rois[:, 4:5] / 2
    lo = torch.floor((rois[:, 1:4] - half) / stride).long()
    hi = torch.ceil((rois[:, 1:4] + half) / stride).long()
    lo = torch.minimum(lo.clamp(min=0), shape - 1)
    hi = torch.maximum(torch.minimum(hi, shape), lo + 1)
    crops = []
    for b, (z0, y0, x0), (z1, y1, x1) in zip(
        rois[:, 0].long().tolist(), lo.tolist(), hi.tolist(), strict=True
    ):
        crop = features[b, :, z0:z1, y0:y1, x0:x1]
        crops.append(F.adaptive_max_pool3d(crop, size))
    return torch.stack(crops)


def mask_windows(rois: torch.Tensor, shape: Sequence[int], multiple: int = MULTIPLE) -> torch.Tensor:
    """(R, 7) integer rows (patch, z0, y0, x0, z1, y1, x1): each region's box in input voxels, its ends
    on multiples of ``multiple``, inside an input of ``shape`` (each a multiple of ``multiple``), at least
    ``multiple`` voxels along each axis."""
    if len(rois) == 0:
        return torch.zeros((0, 7), dtype=torch.long, device=rois.device)
    limit = torch.as_tensor(list(shape), device=rois.device)
    half = rois[:, 4:5] / 2
    lo = torch.floor((rois[:, 1:4] - half + 0.5) / multiple).long() * multiple
    hi = torch.ceil((rois[:, 1:4] + half + 0.5) / multiple).long() * multiple
    lo = torch.minimum(lo.clamp(min=0), limit - multiple)
    hi = torch.maximum(torch.minimum(hi, limit), lo + multiple)
    return torch.cat([rois[:, :1].long(), lo, hi], dim=1)
