"""The true boxes of a training patch and the regions of interest the second-stage heads train on.

The engine gives a detection task what it gives a segmentation task: the image patch and its nodule mask.
The true boxes are the mask's connected components (26-connected): each one's cube is centred on its
bounding box, its side the bounding box's longest edge (NoduleNet's boxes are the annotations' bounding
boxes; a nodule cut by the patch's border keeps the part inside).

RCNN training regions (NoduleNet's ``make_rcnn_target``): the RPN's proposals plus the true boxes, labelled
foreground at IoU >= 0.5 with a true box and background below 0.1 (those in between are not used); per
patch up to 64 regions, at most half of them foreground, the rest background drawn with replacement when
there are too few. The mask head trains on the true boxes themselves (the reference's ``forward_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from lungtk.detect.boxes import box_iou, encode

_FULL = np.ones((3, 3, 3), dtype=bool)


def boxes_from_mask(mask: np.ndarray | torch.Tensor, min_voxels: int = 1) -> torch.Tensor:
    """(G, 4) cubes (z, y, x, side) of the connected components of a 3D mask with ``min_voxels`` or more."""
    inside = (mask > 0.5).cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask) > 0.5
    labels, _ = ndimage.label(inside, structure=_FULL)
    cubes = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        if min_voxels > 1 and int((labels[box] == i).sum()) < min_voxels:
            continue
        lo = np.array([s.start for s in box], dtype=np.float64)
        hi = np.array([s.stop - 1 for s in box], dtype=np.float64)
        cubes.append([*((lo + hi) / 2), float((hi - lo + 1).max())])
    return torch.as_tensor(np.asarray(cubes, dtype=np.float32).reshape(-1, 4))


def truth_boxes(target: torch.Tensor, min_voxels: int = 1) -> list[torch.Tensor]:
    """Per patch of a (B, 1, D, H, W) mask batch, its true cubes, on the batch's device."""
    return [boxes_from_mask(t[0], min_voxels).to(target.device) for t in target]


@dataclass
class RoiSelection:
    """The regions the second-stage heads run on: rows (patch, z, y, x, side) in input voxels; for
    training, each RCNN region's label (1 nodule, 0 background) and regression target."""

    rcnn: torch.Tensor
    mask: torch.Tensor
    rcnn_labels: torch.Tensor | None = None
    rcnn_targets: torch.Tensor | None = None


@dataclass(frozen=True)
class RcnnSampling:
    """NoduleNet's RCNN training configuration."""

    foreground_iou: float = 0.5
    background_iou: float = 0.1
    per_patch: int = 64
    foreground_fraction: float = 0.5


def _draw(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``k`` indices of ``range(n)``: without replacement when there are enough, else with."""
    if k <= n:
        return torch.randperm(n, generator=generator)[:k].to(device)
    return torch.randint(n, (k,), generator=generator).to(device)


def sample_rcnn_rois(
    proposals: list[torch.Tensor],
    truth: list[torch.Tensor],
    sampling: RcnnSampling,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regions (R, 5), labels (R,) and regression targets (R, 4; zero for background) from each patch's
    proposals (K, 5: RPN probability, z, y, x, side) and true cubes (G, 4)."""
    rois, labels, targets = [], [], []
    for b, (props, gt) in enumerate(zip(proposals, truth, strict=True)):
        candidates = torch.cat([props[:, 1:5].float(), gt.float()], dim=0)
        if len(candidates) == 0:
            continue
        device = candidates.device
        if len(gt) == 0:
            pick = _draw(len(candidates), min(len(candidates), sampling.per_patch), generator, device)
            chosen = candidates[pick]
            lab = torch.zeros(len(chosen), dtype=torch.long, device=device)
            tgt = torch.zeros(len(chosen), 4, device=device)
        else:
            best, match = box_iou(candidates, gt).max(dim=1)
            fg = torch.nonzero(best >= sampling.foreground_iou).flatten()
            bg = torch.nonzero(best < sampling.background_iou).flatten()
            n_fg = min(len(fg), round(sampling.per_patch * sampling.foreground_fraction))
            fg = fg[_draw(len(fg), n_fg, generator, device)] if n_fg else fg[:0]
            n_bg = sampling.per_patch - n_fg if len(bg) else 0
            bg = bg[_draw(len(bg), n_bg, generator, device)] if n_bg else bg[:0]
            chosen = torch.cat([candidates[fg], candidates[bg]])
            lab = torch.cat([torch.ones(len(fg), dtype=torch.long), torch.zeros(len(bg), dtype=torch.long)])
            lab = lab.to(device)
            tgt = torch.zeros(len(chosen), 4, device=device)
            if len(fg):
                tgt[: len(fg)] = encode(candidates[fg], gt[match[fg]].float())
        batch_col = torch.full((len(chosen), 1), float(b), device=chosen.device)
        rois.append(torch.cat([batch_col, chosen], dim=1))
        labels.append(lab)
        targets.append(tgt)
    if not rois:
        device = proposals[0].device if proposals else torch.device("cpu")
        return (
            torch.zeros(0, 5, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, 4, device=device),
        )
    return torch.cat(rois), torch.cat(labels), torch.cat(targets)
