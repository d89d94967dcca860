"""Seed 003's training tasks for ``lungtk train``: ``nodulenet`` (the detector) and ``genesis`` (Models
Genesis self-supervised pre-training of its FeatureNet).

Each task's settings are the reference configuration (for a GPU) where it gives one ([R] uci-cbcl/NoduleNet
``config.py``, MrGiovanni/ModelsGenesis ``config.py``); the small CPU recipe is ``scripts/train_detect.sh``.

``nodulenet``: 128^3 crops at 1 mm, the ``nodulenet`` window (HU [-1200, 600] -> [0, 255]), 80 % of the
crops on a nodule placed anywhere at least ~12 voxels inside the crop (the reference's ``bound_size``),
the rest anywhere; SGD lr 0.01, momentum 0.9, weight decay 1e-4, batch 16, 200 epochs; the RCNN loss on
from 32.5 % of the run (epoch 65 of 200) and the mask loss from 40 % (epoch 80). Differences: the lr drops
x0.1 every ``step_size`` steps (the reference: x0.1 at 50 % and x0.01 at 80 %; the engine's step schedule
with step_size = half the run gives the first drop only); augmentation ``seed000`` (flips, 90-degree
rotations, elastic), the nearest ct-io preset to the reference's flips, in-plane rotations and scaling; no
lung mask (the reference sets voxels outside the dilated lungs to 170); the engine's gradient clipping
(12) is kept. ``init=genesis.safetensors`` starts FeatureNet from a ``genesis`` run (same width and
attention).

``genesis``: 32 x 64 x 64 cubes (index, row, col) at 1 mm anywhere in the scans (no labels are read:
``target="none"``), windowed to [0, 1]; batch 6, SGD lr 1, momentum 0.9, no weight decay, lr x0.5 every 40
epochs, early stop after 50 validations without a lower validation loss; L1 loss (the paper; ``loss=l2``:
the reference code). The window is NoduleNet's HU range [-1200, 600] (Models Genesis clips [-1000, 1000]),
so FeatureNet sees the same intensities in pre-training and fine-tuning.
"""

from __future__ import annotations

from typing import Any

from lungtk.core import LungtkError, RunOptions

NODULENET: dict[str, Any] = {
    "width": 1.0,
    "attention": "none",
    "anchors_mm": "5,10,20,30,50",
    "rcnn_start": 0.325,
    "mask_start": 0.4,
    "rpn_threshold": 0.5,
    "nms_iou": 0.1,
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 1e-4,
    "schedule": "step",
    "step_size": 10000,
    "gamma": 0.1,
    "batch_size": 16,
    "epochs": 200,
    "steps_per_epoch": 100,
    "patch": "128",
    "spacing": "1",
    "window": "nodulenet",
    "augmentation": "seed000",
    "sampler": "positive",
    "pos_fraction": 0.8,
    "jitter": 0.8,
    "val_patches": 64,
    "monitor": "cpm",
}
GENESIS: dict[str, Any] = {
    "width": 1.0,
    "attention": "none",
    "loss": "l1",
    "optimizer": "sgd",
    "lr": 1.0,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "schedule": "step",
    "step_size": 4000,
    "gamma": 0.5,
    "batch_size": 6,
    "epochs": 1000,
    "steps_per_epoch": 100,
    "patch": "32,64,64",
    "spacing": "1",
    "window": "-1200,600",
    "augmentation": "none",
    "sampler": "positive",
    "pos_fraction": 0.0,
    "patience": 50,
    "monitor": "loss",
    "val_patches": 64,
}
VAL_DETECTIONS = 20  # detections per validation patch (LUNA16 counts 100 per scan)
DIVISOR = 16


def _fraction(settings: Any, key: str) -> float:
    value = float(settings[key])
    if not 0.0 <= value <= 1.0:
        raise LungtkError(f"setting {key}={value}: use a fraction of the run between 0 and 1")
    return value


def _common(settings: Any, name: str) -> tuple[Any, float, str, tuple[float, float]]:
    """The patch recipe (checked), the width, the attention and the window's value range."""
    from lungtk.ct_io.preprocess import get_window
    from lungtk.detect.feature_net import check_attention
    from lungtk.train.task import PatchRecipe

    target = "mask" if name == "nodulenet" else "none"
    recipe = PatchRecipe.from_config(settings, target=target)
    if any(s % DIVISOR for s in recipe.size):
        raise LungtkError(
            f"{name}: setting patch={settings['patch']}: each side must be a multiple of {DIVISOR}"
        )
    spacing = recipe.spacing_xyz
    if spacing is None or max(spacing) - min(spacing) > 1e-6:
        raise LungtkError(
            f"{name}: setting spacing={settings['spacing']}: NoduleNet needs one isotropic spacing (e.g. 1)"
        )
    width = float(settings["width"])
    if not width > 0:
        raise LungtkError(f"{name}: setting width={width}: use a positive factor (1: the reference's widths)")
    attention = str(settings["attention"])
    try:
        check_attention(attention)
    except LungtkError:
        raise LungtkError(f"{name}: setting attention={attention!r}: use none, cbam or qam") from None
    window = get_window(recipe.window)
    span = (window.low, window.high) if window.out_low is None else (window.out_low, window.out_high)
    return recipe, width, attention, (float(span[0]), float(span[1]))  # type: ignore[arg-type]


def _anchors(text: Any) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise LungtkError(
            f"setting anchors_mm={text!r}: give cube sides in mm separated by commas, e.g. 5,10,20"
        )
    return values


def check_genesis_init(path: str, width: float, attention: str) -> None:
    """A ``genesis`` model file given as ``init`` must have the run's FeatureNet (width and attention)."""
    from lungtk.train.modelfile import read_header

    header = read_header(path)
    if header.architecture != "genesis":
        return
    theirs = header.arch_args
    if float(theirs.get("width", 1.0)) != width or str(theirs.get("attention", "none")) != attention:
        raise LungtkError(
            f"setting init={path}: its FeatureNet has width={theirs.get('width', 1.0)}, "
            f"attention={theirs.get('attention', 'none')}; this run has width={width}, attention={attention}: "
            "set the same width and attention"
        )


def nodulenet(options: RunOptions) -> Any:
    from lungtk.detect.metrics import DetectionMetric
    from lungtk.detect.objective import NoduleNetObjective, ObjectiveConfig
    from lungtk.train.config import total_steps
    from lungtk.train.task import Task

    s = options.settings
    recipe, width, attention, span = _common(s, "nodulenet")
    spacing = recipe.spacing_xyz[0]
    anchors = [a / spacing for a in _anchors(s["anchors_mm"])]
    total = total_steps(s)
    threshold, nms_iou = float(s["rpn_threshold"]), float(s["nms_iou"])
    for key, value in (("rpn_threshold", threshold), ("nms_iou", nms_iou)):
        if not 0.0 <= value <= 1.0:
            raise LungtkError(f"nodulenet: setting {key}={value}: use a value between 0 and 1")
    if str(s.get("init") or ""):
        check_genesis_init(str(s["init"]), width, attention)
    objective = NoduleNetObjective(
        ObjectiveConfig(
            rcnn_start_step=int(_fraction(s, "rcnn_start") * total),
            mask_start_step=int(_fraction(s, "mask_start") * total),
            accumulate=int(s["accumulate"]),
            proposal_threshold=threshold,
            proposal_nms=nms_iou,
            detect={"threshold": threshold, "nms_iou": nms_iou, "max_keep": VAL_DETECTIONS},
        )
    )
    return Task(
        name="nodulenet",
        architecture="nodulenet",
        arch_args={"width": width, "attention": attention, "anchors": anchors, "input_range": list(span)},
        loss=objective,
        metrics=DetectionMetric,
        recipe=recipe,
        monitor="cpm",
        config=s,
        forward=objective.run,
        init_architectures=("genesis",),
    )


def genesis(options: RunOptions) -> Any:
    from lungtk.detect.genesis import GenesisObjective, RestorationMetric
    from lungtk.train.task import Task

    s = options.settings
    recipe, width, attention, span = _common(s, "genesis")
    if span != (0.0, 1.0):
        raise LungtkError(
            f"genesis: setting window={s['window']!r}: Models Genesis' deformations need values in [0, 1]; "
            "give LOW,HIGH in HU (e.g. -1200,600)"
        )
    objective = GenesisObjective(str(s["loss"]))
    return Task(
        name="genesis",
        architecture="genesis",
        arch_args={"width": width, "attention": attention, "input_range": list(span)},
        loss=objective,
        metrics=RestorationMetric,
        recipe=recipe,
        monitor="loss",
        maximize=False,
        config=s,
        forward=objective.run,
    )
