"""NoduleNet's training objective for the engine: the task's ``forward`` (:meth:`NoduleNetObjective.run`)
and ``loss`` (the module itself), with the reference's staging.

The RPN trains from the first step; the RCNN head from ``rcnn_start_step`` (the reference: epoch 65 of
200) and the mask head from ``mask_start_step`` (epoch 80). The objective counts the training passes it
sees (a buffer, so checkpoints keep it and a resumed run switches at the same step), and the stage decides
which heads run at all: before its start a head costs nothing.

The true boxes come from the patch's mask (:func:`lungtk.detect.targets.truth_boxes`). Random draws (the
RPN's negatives, the RCNN's regions) use a generator seeded from torch's global one in training (which
checkpoints restore) and a fixed seed in validation, so validation losses compare across validations.
In validation the pass also runs inference (``detections``) for :class:`~lungtk.detect.metrics.DetectionMetric`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lungtk.detect.losses import mask_loss, rcnn_loss, rpn_loss
from lungtk.detect.roi import with_patch_index
from lungtk.detect.targets import RcnnSampling, RoiSelection, sample_rcnn_rois, truth_boxes


@dataclass(frozen=True)
class ObjectiveConfig:
    """The reference's training configuration (uci-cbcl/NoduleNet ``config.py``), and lungtk's staging."""

    rcnn_start_step: int = 0
    mask_start_step: int = 0
    accumulate: int = 1
    positive_iou: float = 0.5  # rpn_train_fg_thresh_low
    negative_iou: float = 0.02  # rpn_train_bg_thresh_high
    num_neg: int = 800
    num_hard: int = 3
    proposal_threshold: float = 0.5  # rpn_train_nms_pre_score_threshold
    proposal_nms: float = 0.1  # rpn_train_nms_overlap_threshold
    proposal_max: int = 300  # rpn_train_nms_num
    rcnn: RcnnSampling = field(default_factory=RcnnSampling)
    min_voxels: int = 1  # smaller mask components are not nodules to find
    detect: Mapping[str, Any] = field(
        default_factory=lambda: {"threshold": 0.5, "nms_iou": 0.1, "max_keep": 20}
    )
    """Validation inference options (:meth:`lungtk.detect.nodulenet.NoduleNet.detect_from`)."""


class NoduleNetObjective(nn.Module):
    def __init__(self, config: ObjectiveConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("passes", torch.zeros((), dtype=torch.long))

    @property
    def step(self) -> int:
        """The optimizer step the next training pass belongs to."""
        return int(self.passes) // max(1, self.config.accumulate)

    def stages(self) -> tuple[bool, bool]:
        """Whether the RCNN and the mask heads train now."""
        step = self.step
        return step >= self.config.rcnn_start_step, step >= self.config.mask_start_step

    def _generator(self, training: bool) -> torch.Generator:
        seed = int(torch.randint(2**62, (1,)).item()) if training else 0
        return torch.Generator().manual_seed(seed)

    # -- the task's forward ----------------------------------------------------------------------------
    def run(self, model: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        cfg = self.config
        truth = truth_boxes(batch["target"], cfg.min_voxels)
        rcnn_on, mask_on = self.stages()
        generator = self._generator(bool(model.training))

        def select(
            net: Any, logits: torch.Tensor, deltas: torch.Tensor, shape: tuple[int, ...]
        ) -> RoiSelection:
            empty = logits.new_zeros((0, 5))
            selection = RoiSelection(empty, with_patch_index(truth).to(logits.device) if mask_on else empty)
            if rcnn_on:
                proposals = net.proposals(
                    logits,
                    deltas,
                    shape,
                    threshold=cfg.proposal_threshold,
                    nms_iou=cfg.proposal_nms,
                    max_keep=cfg.proposal_max,
                )
                rois, labels, targets = sample_rcnn_rois(proposals, truth, cfg.rcnn, generator)
                selection.rcnn, selection.rcnn_labels, selection.rcnn_targets = rois, labels, targets
            return selection

        output = model(batch["image"], select)
        output["truth"] = truth
        output["generator"] = generator
        if not model.training:
            output["detections"] = model.detect_from(
                output["features"], output["rpn_logits"], output["rpn_deltas"], **dict(cfg.detect)
            )
        return output

    # -- the task's loss -------------------------------------------------------------------------------
    def forward(self, output: Mapping[str, Any], batch: Mapping[str, Any]) -> torch.Tensor:
        cfg = self.config
        if torch.is_grad_enabled():
            self.passes += 1
        cls, reg = rpn_loss(
            output["rpn_logits"],
            output["rpn_deltas"],
            output["anchors"],
            output["truth"],
            positive_iou=cfg.positive_iou,
            negative_iou=cfg.negative_iou,
            num_neg=cfg.num_neg,
            num_hard=cfg.num_hard,
            generator=output.get("generator"),
        )
        total = cls + reg + output["unused"]
        selection: RoiSelection = output["selection"]
        if "rcnn_logits" in output and selection.rcnn_labels is not None:
            assert selection.rcnn_targets is not None
            rc_cls, rc_reg = rcnn_loss(
                output["rcnn_logits"], output["rcnn_deltas"], selection.rcnn_labels, selection.rcnn_targets
            )
            total = total + rc_cls + rc_reg
        if "mask_logits" in output:
            target = batch["target"]
            crops = [
                target[b, 0, z0:z1, y0:y1, x0:x1]
                for b, z0, y0, x0, z1, y1, x1 in output["mask_windows"].tolist()
            ]
            masks = mask_loss(output["mask_logits"], crops)
            zero = sum((m.sum() * 0.0 for m in output["mask_logits"]), total.new_zeros(()))
            total = total + (masks if masks is not None else zero)
        return total
