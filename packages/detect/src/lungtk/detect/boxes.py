"""3D boxes as NoduleNet handles them, in pure torch: IoU, non-maximum suppression, box encoding.

A box is its centre and side lengths in voxels, ``(z, y, x, d, h, w)`` (index, row, col order), or a cube
``(z, y, x, d)``, which stands for ``(z, y, x, d, d, d)``: NoduleNet's anchors and lungtk's detections are
cubes. Voxel ``k``'s centre is at coordinate ``k``, so a box spans ``[z - d / 2, z + d / 2]``.

The encoding is NoduleNet's (Faster R-CNN's, with unit weights): the offset of the centre divided by the
anchor's size, and the log of the size ratio.
"""

from __future__ import annotations

import numpy as np
import torch

CUBE = 4
BOX = 6


def as_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) cubes or (N, 6) boxes -> (N, 6) boxes."""
    if boxes.ndim != 2 or boxes.shape[1] not in (CUBE, BOX):
        raise ValueError(f"boxes are (N, 4) cubes or (N, 6) boxes, got shape {tuple(boxes.shape)}")
    if boxes.shape[1] == BOX:
        return boxes
    return torch.cat([boxes[:, :3], boxes[:, 3:4].expand(-1, 3)], dim=1)


def corners(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The low and high corners (N, 3) of cubes or boxes."""
    b = as_boxes(boxes)
    half = b[:, 3:] / 2
    return b[:, :3] - half, b[:, :3] + half


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) intersection over union of every box of ``a`` with every box of ``b`` (cubes or boxes)."""
    a, b = as_boxes(a).float(), as_boxes(b).float()
    a_lo, a_hi = corners(a)
    b_lo, b_hi = corners(b)
    lo = torch.maximum(a_lo[:, None, :], b_lo[None, :, :])
    hi = torch.minimum(a_hi[:, None, :], b_hi[None, :, :])
    inter = (hi - lo).clamp(min=0).prod(dim=2)
    vol_a = a[:, 3:].prod(dim=1)
    vol_b = b[:, 3:].prod(dim=1)
    union = vol_a[:, None] + vol_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int | None = None
) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices of the kept boxes, highest score first. A box is dropped
    when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``; ties keep the earlier box."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores.detach().float(), descending=True, stable=True)
    over = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def encode(anchors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression targets (N, 4) of cubes ``targets`` relative to cubes ``anchors``:
    ``(dz, dy, dx) = (t - a) / a_d`` and ``dd = log(t_d / a_d)``."""
    size = anchors[:, 3:4]
    return torch.cat([(targets[:, :3] - anchors[:, :3]) / size, torch.log(targets[:, 3:4] / size)], dim=1)


def decode(anchors: torch.Tensor, deltas: torch.Tensor, max_log_ratio: float = 4.0) -> torch.Tensor:
    """The cubes that ``deltas`` (N, 4) describe relative to ``anchors`` (the inverse of :func:`encode`);
    the size's log-ratio is clamped at ``max_log_ratio`` so an untrained head cannot overflow."""
    size = anchors[:, 3:4]
    centre = anchors[:, :3] + deltas[:, :3] * size
    return torch.cat([centre, size * torch.exp(deltas[:, 3:4].clamp(max=max_log_ratio))], dim=1)


def clip_centres(boxes: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Boxes with their centres moved inside an image of ``shape`` (index, row, col), as NoduleNet clips."""
    limit = torch.as_tensor([s - 1 for s in shape], dtype=boxes.dtype, device=boxes.device)
    return torch.cat([torch.minimum(boxes[:, :3].clamp(min=0), limit), boxes[:, 3:]], dim=1)
