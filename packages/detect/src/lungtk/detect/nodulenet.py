"""NoduleNet (Tang et al., MICCAI 2019), seed 003's detector: FeatureNet, a region-proposal network with
cubic anchors, an RCNN false-positive-reduction head on 7^3 ROI crops and a mask head, in pure torch.

``forward(x, select)`` is the training pass: FeatureNet and the RPN on the patch, then the second-stage
heads on the regions ``select(model, rpn_logits, rpn_deltas, shape)`` picks (a
:class:`~lungtk.detect.targets.RoiSelection`; the training objective samples them against the true boxes).
Without ``select`` the heads run on each patch's best proposals (8 for the RCNN, 1 for the mask head). It
returns a dict of the heads' outputs; a head with no region to run on contributes a zero term (``unused``)
so every parameter takes part in the graph, as DistributedDataParallel requires.

``detect(x)`` is inference: proposals (RPN probability above ``threshold``, at most ``pre_nms`` by score,
decoded, 3D NMS at ``nms_iou``), the RCNN's probability for each, the score as the mean of the RPN's and
the RCNN's (the paper's evaluation), NMS again on the score, the ``max_keep`` best, and optionally the
mask head's probabilities. Boxes are cubes (z, y, x, side) in the input's voxels (the RPN's boxes; the
reference's ensemble keeps them rather than the RCNN's refinement).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from lungtk.detect.anchors import ANCHORS_MM, STRIDE, anchor_grid
from lungtk.detect.boxes import clip_centres, decode, nms
from lungtk.detect.feature_net import FeatureNet, Features, scaled
from lungtk.detect.heads import MaskHead, RcnnHead, RpnHead
from lungtk.detect.roi import mask_windows, roi_crop, with_patch_index
from lungtk.detect.targets import RoiSelection
from lungtk.nn_blocks import he_init_, prior_bias_

Selector = Callable[[Any, torch.Tensor, torch.Tensor, tuple[int, ...]], RoiSelection]
DEFAULT_RCNN_ROIS, DEFAULT_MASK_ROIS = 8, 1


@dataclass
class Detections:
    """One patch's detections, best first: cubes (K, 4) in input voxels, the final score and its two
    parts, and (when asked) each box's mask window (z0, y0, x0, z1, y1, x1) with its probabilities."""

    boxes: torch.Tensor
    scores: torch.Tensor
    rpn_scores: torch.Tensor
    rcnn_scores: torch.Tensor
    masks: list[tuple[tuple[int, ...], torch.Tensor]] | None = None


class NoduleNet(nn.Module):
    TINY: ClassVar[dict[str, Any]] = {"args": {"width": 0.125}, "input": (1, 32, 32, 32)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(
        self,
        width: float = 1.0,
        attention: str = "none",
        anchors: Sequence[float] = ANCHORS_MM,
        input_range: Sequence[float] = (0.0, 255.0),
        rcnn_crop: int = 7,
    ) -> None:
        """``anchors``: cube sides in input voxels (the reference's 5-50 mm at 1 mm); ``input_range``: the
        values the input window spans (``nodulenet``: 0-255)."""
        super().__init__()
        self.anchor_sizes = [float(a) for a in anchors]
        self.rcnn_crop = int(rcnn_crop)
        self.feature_net = FeatureNet(width, attention, input_range)
        ch = self.feature_net.channels
        c = lambda n: scaled(n, width)  # noqa: E731
        self.rpn = RpnHead(ch["f4"], c(64), len(self.anchor_sizes))
        self.rcnn = RcnnHead(ch["r4"], self.rcnn_crop, (c(512), c(256)))
        self.mask_head = MaskHead(ch["f4"], ch["f2"], c(64))
        self._init_weights()
        self._anchors: dict[tuple[Any, ...], torch.Tensor] = {}

    def _init_weights(self) -> None:
        """He (fan-out) for the convolutions; the RCNN's fully connected layers keep torch's default
        (fan-in); the prediction layers start small (std 0.01, deltas 0.001, Faster R-CNN's), the RPN's
        objectness at a prior of 0.01 so the first steps do not drown in the negatives."""
        for part in (self.feature_net, self.rpn.conv, self.mask_head):
            he_init_(part, nonlinearity="relu")
        for layer, std in (
            (self.rpn.logits, 0.01),
            (self.rpn.deltas, 0.001),
            (self.rcnn.logits, 0.01),
            (self.rcnn.deltas, 0.001),
        ):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)
        prior_bias_(self.rpn.logits, 0.01)

    # -- pieces ----------------------------------------------------------------------------------------
    def anchors_for(self, feature_shape: Sequence[int], device: torch.device) -> torch.Tensor:
        key = (*feature_shape, str(device))
        if key not in self._anchors:
            self._anchors = {key: anchor_grid(feature_shape, self.anchor_sizes, STRIDE, device)}
        return self._anchors[key]

    def proposals(
        self,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        shape: Sequence[int],
        *,
        threshold: float = 0.5,
        nms_iou: float = 0.1,
        max_keep: int | None = None,
        pre_nms: int = 2000,
    ) -> list[torch.Tensor]:
        """Per patch, (K, 5) rows (RPN probability, z, y, x, side), best first (no gradient)."""
        feature_shape = tuple(s // STRIDE for s in shape)
        anchors = self.anchors_for(feature_shape, logits.device)
        probs = torch.sigmoid(logits.detach().float())
        out = []
        for p, d in zip(probs, deltas.detach().float(), strict=True):
            idx = torch.nonzero(p > threshold).flatten()
            if len(idx) > pre_nms:
                idx = idx[torch.topk(p[idx], pre_nms).indices]
            boxes = clip_centres(decode(anchors[idx], d[idx]), tuple(shape))
            keep = nms(boxes, p[idx], nms_iou, max_keep)
            out.append(torch.cat([p[idx][keep, None], boxes[keep]], dim=1))
        return out

    def classify(self, features: Features, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RCNN logits (R, 2) and deltas (R, 4) of regions (R, 5)."""
        return self.rcnn(roi_crop(features.r4, rois, STRIDE, self.rcnn_crop))

    def segment_windows(
        self, features: Features, rois: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The regions' mask windows (R, 7) and the mask head's logits in each."""
        windows = mask_windows(rois, features.image.shape[2:])
        return windows, self.mask_head(features, windows)

    def _default_selection(
        self, logits: torch.Tensor, deltas: torch.Tensor, shape: tuple[int, ...]
    ) -> RoiSelection:
        props = self.proposals(logits, deltas, shape, threshold=-1.0, nms_iou=1.0, pre_nms=DEFAULT_RCNN_ROIS)
        rcnn = with_patch_index([p[:, 1:] for p in props])
        masks = with_patch_index([p[:DEFAULT_MASK_ROIS, 1:] for p in props])
        return RoiSelection(rcnn, masks)

    # -- passes -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, select: Selector | None = None) -> dict[str, Any]:
        features = self.feature_net(x)
        logits, deltas = self.rpn(features.f4)
        shape = tuple(x.shape[2:])
        if select is None:
            selection = self._default_selection(logits, deltas, shape)
        else:
            selection = select(self, logits, deltas, shape)
        out: dict[str, Any] = {
            "anchors": self.anchors_for(tuple(s // STRIDE for s in shape), x.device),
            "features": features,
            "rpn_logits": logits,
            "rpn_deltas": deltas,
            "selection": selection,
        }
        unused: list[nn.Module] = []
        if len(selection.rcnn):
            out["rcnn_logits"], out["rcnn_deltas"] = self.classify(features, selection.rcnn)
        else:
            unused.append(self.rcnn)
        if len(selection.mask):
            out["mask_windows"], out["mask_logits"] = self.segment_windows(features, selection.mask)
        else:
            unused.append(self.mask_head)
        out["unused"] = sum((0.0 * p.sum() for m in unused for p in m.parameters()), logits.new_zeros(()))
        return out

    @torch.no_grad()
    def detect_from(
        self,
        features: Features,
        logits: torch.Tensor,
        deltas: torch.Tensor,
        *,
        threshold: float = 0.5,
        nms_iou: float = 0.1,
        max_keep: int = 100,
        pre_nms: int = 2000,
        with_masks: bool = False,
        keep: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> list[Detections]:
        """Detections from a pass's FeatureNet maps and RPN outputs (see the module's docstring).
        ``keep(patch, boxes)`` (a boolean per box) drops detections before their masks are computed (the
        whole-scan detector keeps those a tile owns)."""
        shape = tuple(features.image.shape[2:])
        props = self.proposals(logits, deltas, shape, threshold=threshold, nms_iou=nms_iou, pre_nms=pre_nms)
        rois = with_patch_index([p[:, 1:] for p in props])
        rcnn_p = torch.zeros(0, device=logits.device)
        if len(rois):
            rcnn_logits, _ = self.classify(features, rois)
            rcnn_p = torch.softmax(rcnn_logits.float(), dim=1)[:, 1]
        out, start = [], 0
        for p in props:
            rpn_p, boxes = p[:, 0], p[:, 1:]
            rc = rcnn_p[start : start + len(p)]
            start += len(p)
            score = (rpn_p + rc) / 2
            kept = nms(boxes, score, nms_iou)
            if keep is not None:
                kept = kept[keep(len(out), boxes[kept])]
            kept = kept[:max_keep]
            out.append(Detections(boxes[kept], score[kept], rpn_p[kept], rc[kept]))
        if with_masks:
            self.attach_masks(features, out)
        return out

    def attach_masks(self, features: Features, detections: list[Detections]) -> None:
        """Set each detection's mask (its window and the mask head's probabilities)."""
        rois = with_patch_index([d.boxes for d in detections])
        windows, logits = self.segment_windows(features, rois) if len(rois) else (rois, [])
        start = 0
        for d in detections:
            n = len(d.boxes)
            d.masks = [
                (tuple(w[1:].tolist()), torch.sigmoid(m.float()))
                for w, m in zip(windows[start : start + n], logits[start : start + n], strict=True)
            ]
            start += n

    @torch.no_grad()
    def detect(self, x: torch.Tensor, **options: Any) -> list[Detections]:
        """Detections in each patch of ``x`` (see :meth:`detect_from` for ``options``)."""
        features = self.feature_net(x)
        logits, deltas = self.rpn(features.f4)
        return self.detect_from(features, logits, deltas, **options)

    @torch.no_grad()
    def segment(self, x: torch.Tensor, rois: torch.Tensor) -> list[tuple[tuple[int, ...], torch.Tensor]]:
        """The mask head's probabilities for given regions (R, 5): each region's window and values."""
        features = self.feature_net(x)
        windows, logits = self.segment_windows(features, rois)
        return [
            (tuple(w[1:].tolist()), torch.sigmoid(m.float())) for w, m in zip(windows, logits, strict=True)
        ]
