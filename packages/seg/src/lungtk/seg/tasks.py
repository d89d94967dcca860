"""The seed papers' segmentation training tasks for ``lungtk train``.

Each task's settings are its paper's configuration (the default, for a GPU) where the paper gives one;
the small CPU configurations that lungtk ships are the recipe in ``scripts/train_seg.sh``. Registering a
task (``plugin.py``) imports nothing heavy; :func:`resunet` etc. run when ``lungtk train`` builds one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lungtk.core import LungtkError, RunOptions
from lungtk.core.labels import TEXTURES

RESUNET: dict[str, Any] = {  # seed 000: 80^3 at 0.6375 mm, width 32, 5 levels, Adam 1e-4
    "width": 32,
    "levels": 5,
    "attention": "none",
    "texture_head": True,
    "head_dropout": 0.6,
    "texture_pool": "bottleneck",  # the paper's; "mask": the first level's features under the nodule
    "ce_weight": 0.2,
    "ce_from_iou": 0.45,
    "bce_weight": 0.0,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "warmup_steps": 50,
    "batch_size": 4,
    "epochs": 300,
    "steps_per_epoch": 100,
    "patch": "80",
    "spacing": "0.6375",
    "window": "-1000,400",
    "augmentation": "seed000",
    "sampler": "positive",
    "pos_fraction": 0.8,
    "positive_label": "texture",
    "val_patches": 64,
}
UNET25D: dict[str, Any] = {  # seed 001: 7 slices, 16 filters, depth 3, Adam 1e-3, Dice + 8 FN-Dice
    "width": 16,
    "depth": 3,
    "fn_weight": 8.0,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "constant",
    "batch_size": 16,
    "epochs": 15,
    "steps_per_epoch": 1000,
    "patch": "7,64,64",
    "spacing": "0.8,0.8,1.5",
    "window": "luna",
    "augmentation": "seed001",
    "sampler": "positive",
    "pos_fraction": 0.5,
    "monitor": "recall",
    "val_patches": 128,
}
UNET3D_RES: dict[str, Any] = {  # seed 002: MONAI residual-unit U-Net, top-K BCE + Dice, isample
    "channels": "16,32,64,128,256",
    "subunits": 2,
    "dropout": 0.0,
    "alpha": 0.5,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "batch_size": 4,
    "epochs": 80,
    "steps_per_epoch": 100,
    "patch": "96",
    "spacing": "native",
    "window": "-1000,1000",
    "augmentation": "seed002",
    "sampler": "isample",
    "val_patches": 32,
}
DILATED_UNET: dict[str, Any] = {  # seed 004: 32^3 at 0.7 x 0.7 x 1.0 mm, Adam 1e-4, negative Dice
    "widths": "16,32,64,128",
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "schedule": "plateau",
    "gamma": 0.8,
    "batch_size": 24,
    "epochs": 150,
    "steps_per_epoch": 50,
    "patch": "32",
    "spacing": "0.7,0.7,1.0",
    "window": "unit",
    "augmentation": "seed000",
    "sampler": "positive",
    "pos_fraction": 0.9,
    "val_patches": 64,
}


def _ints(text: Any, what: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise LungtkError(f"setting {what}={text!r}: use whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise LungtkError(f"setting {what}={text!r}: use positive whole numbers")
    return values


def _check_divisible(recipe: Any, divisor: int, name: str, axes: tuple[int, ...] = (0, 1, 2)) -> None:
    if any(recipe.size[a] % divisor for a in axes):
        raise LungtkError(
            f"{name}: patch {recipe.size} must be divisible by {divisor} for this network depth"
        )


def _joint_loss(ce_weight: float, ce_from_iou: float, bce_weight: float = 0.0) -> Any:
    """Seed 000: ``(Dice + w * weighted CE) / 2`` with the CE on the texture head, off until the validation
    IoU reaches ``ce_from_iou`` (then on for good; the switch is a buffer, so checkpoints keep it).
    Patches without a rated nodule (label -1) add no CE. ``bce_weight`` > 0 adds a voxel BCE to the Dice
    (nnU-Net's Dice + CE; not in the paper, whose setting is 0)."""
    import torch

    from lungtk.nn_blocks import DiceLoss, inverse_frequency_weights

    class JointLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dice = DiceLoss("sigmoid", smooth=1.0)
            self.register_buffer("ce_on", torch.tensor(ce_from_iou <= 0))

        def forward(self, output: Any, batch: Mapping[str, Any]) -> Any:
            seg, texture = output if isinstance(output, tuple) else (output, None)
            loss = self.dice(seg, batch["target"])
            if bce_weight:
                bce = torch.nn.functional.binary_cross_entropy_with_logits(seg.float(), batch["target"])
                loss = loss + bce_weight * bce
            label = batch.get("label")
            rated = None if label is None else label >= 0
            if bool(self.ce_on) and texture is not None and rated is not None and bool(rated.any()):
                counts = torch.bincount(label[rated], minlength=texture.shape[1])
                weight = inverse_frequency_weights(counts).to(texture.device)
                ce = torch.nn.functional.cross_entropy(texture[rated].float(), label[rated], weight=weight)
                loss = loss + ce_weight * ce
            elif texture is not None:
                # no CE: the head stays in the graph with a zero gradient, so that every torchrun rank
                # reduces its parameters and a train_only=texture_head run has a loss to step on
                loss = loss + 0.0 * texture.float().sum()
            return 0.5 * loss

        def on_validation(self, metrics: Mapping[str, float]) -> None:
            dice = metrics.get("dice", 0.0)
            if dice / (2.0 - dice) >= ce_from_iou:  # IoU = Dice / (2 - Dice)
                self.ce_on.fill_(True)

    return JointLoss()


def _on_target(loss: Any) -> Any:
    """``loss(output, batch["target"])`` as a module (so a stateful loss's state is checkpointed)."""
    import torch

    class OnTarget(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = loss

        def forward(self, output: Any, batch: Mapping[str, Any]) -> Any:
            return self.inner(output, batch["target"])

    return OnTarget()


def resunet(options: RunOptions) -> Any:
    from lungtk.seg.networks.resunet import TEXTURE_POOLS
    from lungtk.train.metrics import JointHeadMetric, SegmentationMetric
    from lungtk.train.task import PatchRecipe, Task, default_forward

    s = options.settings
    levels = int(s["levels"])
    recipe = PatchRecipe.from_config(s, target="mask")
    _check_divisible(recipe, 2 ** (levels - 1), "resunet")
    attention = str(s["attention"])
    if attention not in ("none", "cbam"):
        raise LungtkError(f"resunet: setting attention={attention!r}: use none or cbam")
    pool = str(s["texture_pool"])
    if pool not in TEXTURE_POOLS:
        raise LungtkError(f"resunet: setting texture_pool={pool!r}: use {' or '.join(TEXTURE_POOLS)}")
    loss = _joint_loss(float(s["ce_weight"]), float(s["ce_from_iou"]), float(s["bce_weight"]))
    return Task(
        name="resunet",
        architecture="resunet",
        arch_args={
            "width": int(s["width"]),
            "levels": levels,
            "attention": None if attention == "none" else attention,
            "texture_classes": len(TEXTURES) if bool(s["texture_head"]) else 0,
            "head_dropout": float(s["head_dropout"]),
            "texture_pool": pool,
        },
        loss=loss,
        metrics=(lambda: JointHeadMetric(len(TEXTURES))) if bool(s["texture_head"]) else SegmentationMetric,
        recipe=recipe,
        monitor="dice",
        config=s,
        on_validation=loss.on_validation,
        forward=reading_own_nodule_masks if pool == "mask" else default_forward,
    )


def reading_own_nodule_masks(model: Any, batch: Mapping[str, Any]) -> Any:
    """Seed 000 with ``texture_pool=mask``: the texture head reads the features under the network's own
    segmentation of the target's nodules, as it will at inference (:meth:`ResUNet.forward`)."""
    return model(batch["image"], near=batch["target"])


class SliceLoss:
    """Seed 001: Dice + ``fn_weight`` x false-negative Dice on the centre slice of a 2.5D patch."""

    def __init__(self, fn_weight: float) -> None:
        from lungtk.nn_blocks import RecallWeightedDiceLoss

        self.loss = RecallWeightedDiceLoss(fn_weight)

    def __call__(self, output: Any, batch: Mapping[str, Any]) -> Any:
        return self.loss(output, centre_slice(batch["target"]))


def centre_slice(volume: Any) -> Any:
    """(B, 1, slices, H, W) -> (B, 1, H, W), the middle slice."""
    return volume[:, :, volume.shape[2] // 2]


def slices_as_channels(model: Any, batch: Mapping[str, Any]) -> Any:
    return model(batch["image"][:, 0])  # (B, 1, slices, H, W) -> (B, slices, H, W)


def centre_slice_metric() -> Any:
    from lungtk.train.metrics import SegmentationMetric

    class CentreSliceMetric(SegmentationMetric):
        def update(self, output: Any, batch: Mapping[str, Any]) -> None:
            super().update(output, {**batch, "target": centre_slice(batch["target"])})

    return CentreSliceMetric()


def unet25d(options: RunOptions) -> Any:
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    recipe = PatchRecipe.from_config(s, target="mask")
    depth = int(s["depth"])
    if recipe.size[0] % 2 != 1:
        raise LungtkError(f"unet25d: patch {recipe.size} needs an odd number of slices (seed 001: 7)")
    _check_divisible(recipe, 2 ** (depth - 1), "unet25d", axes=(1, 2))
    return Task(
        name="unet25d",
        architecture="unet25d",
        arch_args={"slices": recipe.size[0], "width": int(s["width"]), "depth": depth},
        loss=SliceLoss(float(s["fn_weight"])),
        metrics=centre_slice_metric,
        recipe=recipe,
        monitor="recall",
        config=s,
        forward=slices_as_channels,
    )


def unet3d_res(options: RunOptions) -> Any:
    from lungtk.nn_blocks import TopKBCEDiceLoss
    from lungtk.train.metrics import SegmentationMetric
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    channels = _ints(s["channels"], "channels")
    recipe = PatchRecipe.from_config(s, target="mask")
    _check_divisible(recipe, 2 ** (len(channels) - 1), "unet3d-res")
    loss = TopKBCEDiceLoss(float(s["alpha"]))
    return Task(
        name="unet3d-res",
        architecture="unet3d-res",
        arch_args={"channels": channels, "subunits": int(s["subunits"]), "dropout": float(s["dropout"])},
        loss=_on_target(loss),
        metrics=SegmentationMetric,
        recipe=recipe,
        monitor="dice",
        config=s,
    )


def dilated_unet(options: RunOptions) -> Any:
    from lungtk.nn_blocks.losses import negative_squared_dice
    from lungtk.train.metrics import SegmentationMetric
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    widths = _ints(s["widths"], "widths")
    if len(widths) != 4:
        raise LungtkError(
            f"dilated-unet: setting widths={s['widths']!r}: give 4 widths (seed 004's 4 levels)"
        )
    recipe = PatchRecipe.from_config(s, target="mask")
    _check_divisible(recipe, 8, "dilated-unet")
    return Task(
        name="dilated-unet",
        architecture="dilated-unet",
        arch_args={"widths": widths},
        loss=_on_target(negative_squared_dice),
        metrics=SegmentationMetric,
        recipe=recipe,
        monitor="dice",
        config=s,
    )
