"""lungtk-detect's components and training tasks, registered through the ``lungtk`` entry-point group like
any plugin. Nothing heavy is imported here: factories are import paths, settings plain values."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl

# NoduleNet's inference settings (one table for its detector and its segmenter, so that
# `--set nodulenet.KEY=VALUE` addresses both roles). `nodulenet` and `nodulenet-qam` ship weights
# (scripts/train_detect.sh: the base run and the Quartet-attention run); `nodulenet-cbam` needs --weights.
WEIGHTS = {
    "nodulenet": "lungtk.detect:weights/nodulenet.safetensors",
    "nodulenet-qam": "lungtk.detect:weights/nodulenet-qam.safetensors",
}
NODULENET_SETTINGS = {
    "tile": 128,
    "overlap": 32,
    "tile_batch": 0,
    "rpn_threshold": 0.5,
    "nms_iou": 0.1,
    "max_candidates": 100,
    "masks": True,
    "mask_threshold": 0.5,
    "tta": True,  # flips: on the calibration phantoms of seed 8000, CPM 0.857 -> 0.921 for 3.3x the time
}
NODULENET_VARIANTS = {
    "nodulenet": "NoduleNet (seed 003)",
    "nodulenet-cbam": "NoduleNet with CBAM in its residual blocks (seed 003)",
    "nodulenet-qam": "NoduleNet with Quartet attention in its residual blocks (seed 003)",
}


@hookimpl
def lungtk_register_detectors(registry: Any) -> None:
    registry.add(
        "blob",
        "lungtk.detect.blob:BlobDetector.from_options",
        summary="Classical: multi-scale blob filter in the lungs, vessels rejected by shape (no weights).",
        cpu_only=True,
        takes_weights=False,
        settings={
            "min_diameter_mm": 3.5,
            "max_diameter_mm": 32.0,
            "scales": 7,
            "min_contrast_hu": 40.0,
            "max_candidates": 100,
        },
    )
    _add_nodulenets(
        registry,
        ": the whole scan at the model's spacing by overlapping tiles; score = mean of the RPN and RCNN "
        "probabilities.",
    )


@hookimpl
def lungtk_register_segmenters(registry: Any) -> None:
    _add_nodulenets(
        registry,
        "'s mask head: the masks of its own detections (--detector NAME), or a cube around any other "
        "candidate.",
    )


def _add_nodulenets(registry: Any, role: str) -> None:
    """Each NoduleNet variant in one role (detector or segmenter): one factory, weights and settings."""
    for name, what in NODULENET_VARIANTS.items():
        registry.add(
            name,
            f"lungtk.detect.detector:{name.replace('-', '_')}",
            summary=what + role.replace("NAME", name) + ("" if name in WEIGHTS else " Needs --weights."),
            default_weights=WEIGHTS.get(name),
            settings=NODULENET_SETTINGS,
        )


@hookimpl
def lungtk_register_tasks(registry: Any) -> None:
    from lungtk.detect.tasks import GENESIS, NODULENET

    registry.add(
        "nodulenet",
        "lungtk.detect.tasks:nodulenet",
        summary="Seed 003 NoduleNet detector (RPN + RCNN + mask head; attention none|cbam|qam).",
        settings=NODULENET,
    )
    registry.add(
        "genesis",
        "lungtk.detect.tasks:genesis",
        summary="Seed 003 Models Genesis pre-training of NoduleNet's FeatureNet (unlabelled scans).",
        settings=GENESIS,
    )
