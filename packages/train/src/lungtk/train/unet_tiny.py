"""``unet-tiny``: nodule segmentation with a small 3D U-Net, the engine's reference task.

A 3-level U-Net (8-16-32 features, nnU-Net's conv-InstanceNorm-LeakyReLU blocks) on 32^3 patches at
1 mm, HU window [-1024, 400] -> [-1, 1], Dice + BCE (nnU-Net's loss), AdamW with a warm-up and cosine
decay, seed 000's augmentation (flips, 90-degree rotations, elastic, noise). It trains on a phantom folder
in minutes on a CPU and is a baseline the seed papers' networks must beat.

This module is imported only when the task is built; registering it (``plugin.py``) needs only the
constants below, and importing it costs no torch import until :func:`create` runs.
"""

from __future__ import annotations

from typing import Any

from lungtk.core import RunOptions

SUMMARY = "Nodule segmentation, small 3D U-Net (8-16-32), Dice + BCE; the engine's reference task."
SETTINGS: dict[str, Any] = {
    "width": 8,
    "levels": 3,
    "bce_weight": 1.0,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup_steps": 20,
    "epochs": 20,
    "steps_per_epoch": 50,
    "batch_size": 4,
    "patch": "32",
    "spacing": "1.0",
    "augmentation": "seed000",
    "pos_fraction": 0.5,
    "val_patches": 32,
}


class DiceBCE:
    """``Dice + bce_weight * BCE`` on one logit channel; a callable of (output, batch)."""

    def __init__(self, bce_weight: float) -> None:
        import torch

        from lungtk.nn_blocks import DiceLoss

        self.dice = DiceLoss("sigmoid", smooth=1.0, batch=True)
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.bce_weight = bce_weight

    def __call__(self, output: Any, batch: Any) -> Any:
        target = batch["target"]
        return self.dice(output, target) + self.bce_weight * self.bce(output.float(), target)


def create(options: RunOptions) -> Any:
    from lungtk.train.metrics import SegmentationMetric
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    width, levels = int(s["width"]), int(s["levels"])
    if width < 1 or levels < 1:
        from lungtk.core import LungtkError

        raise LungtkError(f"unet-tiny: width ({width}) and levels ({levels}) must be 1 or more")
    recipe = PatchRecipe.from_config(s, target="mask")
    factor = 2 ** (levels - 1)
    if any(n % factor for n in recipe.size):
        from lungtk.core import LungtkError

        raise LungtkError(
            f"unet-tiny: patch {recipe.size} must be divisible by {factor} with levels={levels}"
        )
    return Task(
        name="unet-tiny",
        architecture="unet",
        arch_args={"in_channels": 1, "out_channels": 1, "widths": [width * 2**i for i in range(levels)]},
        loss=DiceBCE(float(s["bce_weight"])),
        metrics=SegmentationMetric,
        recipe=recipe,
        monitor="dice",
        maximize=True,
        config=s,
    )
