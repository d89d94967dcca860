"""Test-time augmentation for a detector: the scan and its mirror images, the detections mapped back and
fused.

Each pass sees the scan flipped along some axes; its cubes come back to the scan's own voxels
(:func:`unflip_cubes`). :func:`fuse_passes` then clusters the detections of every pass (nnDetection's
weighted box clustering, simplified): the highest-scoring cube left and every cube overlapping it by more
than ``iou`` form a cluster; in the cluster each pass's best cube counts once; the fused score is the mean
of those over **all** passes (a pass that missed the nodule adds 0), and the fused cube is their
score-weighted mean. A nodule every pass finds keeps its score; a false positive that one mirror image
produces loses most of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lungtk.detect.boxes import box_iou

FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,))
"""The passes: the scan itself, then flipped along each axis (index, row, col) in turn."""


def unflip_cubes(cubes: torch.Tensor, flip: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Cubes (N, 4: z, y, x, side) found in a scan of ``shape`` flipped along ``flip``, in the unflipped
    scan's voxels (voxel i of an axis of n voxels is voxel n - 1 - i of its mirror image)."""
    out = cubes.clone()
    for axis in flip:
        out[:, axis] = shape[axis] - 1 - cubes[:, axis]
    return out


def unflip_window(
    start: Sequence[int], size: Sequence[int], flip: Sequence[int], shape: Sequence[int]
) -> list[int]:
    """The first voxel, in the unflipped scan, of a window of ``size`` starting at ``start`` in the flipped
    one."""
    out = [int(s) for s in start]
    for axis in flip:
        out[axis] = int(shape[axis]) - int(start[axis]) - int(size[axis])
    return out


def fuse_passes(
    cubes: Sequence[torch.Tensor], scores: Sequence[torch.Tensor], iou: float
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Fused cubes (M, 4), their scores (M,), highest first, and for each the (pass, index) of its
    highest-scoring member (whose mask stands for the cluster's)."""
    passes = len(cubes)
    every = torch.cat([c.float() for c in cubes]) if passes else torch.zeros(0, 4)
    score = torch.cat([s.float() for s in scores]) if passes else torch.zeros(0)
    origin = [(p, i) for p, c in enumerate(cubes) for i in range(len(c))]
    if not len(every):
        return torch.zeros(0, 4), torch.zeros(0), []
    owner = torch.tensor([p for p, _ in origin])
    overlaps = box_iou(every, every) > iou
    overlaps.fill_diagonal_(True)
    free = torch.ones(len(every), dtype=torch.bool)
    fused_cubes, fused_scores, heads = [], [], []
    for i in torch.argsort(score, descending=True).tolist():
        if not free[i]:
            continue
        members = torch.nonzero(overlaps[i] & free).flatten()
        free[members] = False
        best = [  # each pass's best member
            members[owner[members] == p][score[members[owner[members] == p]].argmax()]
            for p in range(passes)
            if bool((owner[members] == p).any())
        ]
        chosen = torch.stack(best)
        weight = score[chosen]
        fused_cubes.append((every[chosen] * weight[:, None]).sum(0) / weight.sum().clamp_min(1e-12))
        fused_scores.append(weight.sum() / passes)
        heads.append(origin[i])
    order = torch.argsort(torch.stack(fused_scores), descending=True)
    return (
        torch.stack(fused_cubes)[order],
        torch.stack(fused_scores)[order],
        [heads[k] for k in order.tolist()],
    )
