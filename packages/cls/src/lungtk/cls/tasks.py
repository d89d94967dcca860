"""The seed papers' classification training tasks for ``lungtk train``.

Each task's settings are its paper's configuration (the default, for a GPU); the small CPU recipe lungtk
ships weights from is ``scripts/train_cls.sh``. Registering a task (``plugin.py``) imports nothing heavy.

- ``nodule-cnn`` (seed 001, model B): nodule vs non-nodule on 32 x 48 x 48 crops of the candidates
  table, positives balanced 1:1 against negatives in training only.
- ``malignancy-cnn`` (seed 001, model C): the same network, benign vs malignant (mean LIDC rating above
  3) on the annotated nodules; the fine-tuning recipe starts from a ``nodule-cnn`` model file
  (``--set init=FILE trainable=2 lr=0.003``: block 4 and the head learn), the default is from scratch.
- ``texture-cnn``: the same network, ground-glass / part-solid / solid (seed 000's classes), the classes
  in turn in training.
"""

from __future__ import annotations

from typing import Any

from lungtk.core import LungtkError, RunOptions
from lungtk.core.labels import MALIGNANCY, NODULE, TASK_LABELS, TEXTURE

# [D] the paper crops 32 x 48 x 48 voxels at each scan's own spacing; lungtk resamples them to one spacing
# (0.8 x 0.8 x 1.25 mm, about a 38 x 38 x 40 mm box, LUNA16's typical voxel), so a model sees one scale
# whatever the scanner.
LUNA_MODEL: dict[str, Any] = {  # seed 001: SGD lr 1e-3 with weight decay, batch 48, 95 epochs
    "width": 8,
    "trainable": 0,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.99,
    "nesterov": False,
    "weight_decay": 1e-4,
    "schedule": "constant",
    "clip_grad": 0.0,
    "batch_size": 48,
    "epochs": 95,
    "steps_per_epoch": 1042,  # the reference's virtual epoch: 50 000 samples
    "patch": "32,48,48",
    "spacing": "0.8,0.8,1.25",
    "window": "luna",
    "augmentation": "seed001",
    "sampler": "balanced",
    "balance_ratio": 1,
    "jitter": 0.1,
    "val_patches": 512,
}
NODULE_CNN: dict[str, Any] = {**LUNA_MODEL, "labels": NODULE, "monitor": "f1"}
MALIGNANCY_CNN: dict[str, Any] = {  # the from-scratch recipe, selected in the paper (val AUC 0.911)
    **LUNA_MODEL,
    "labels": MALIGNANCY,
    "epochs": 30,
    "steps_per_epoch": 2084,  # 100 000 samples
    "monitor": "auc",
}
TEXTURE_CNN: dict[str, Any] = {**LUNA_MODEL, "labels": TEXTURE, "monitor": "f1"}


def _luna_task(options: RunOptions, name: str) -> Any:
    import torch

    from lungtk.train.metrics import BinaryClassificationMetric, MulticlassMetric
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    labels = str(s["labels"])
    classes = len(TASK_LABELS[labels])
    recipe = PatchRecipe.from_config(s, target="label")
    if any(p % 16 for p in recipe.size):
        raise LungtkError(f"{name}: setting patch={s['patch']}: each size must be a multiple of 16")
    trainable = int(s["trainable"])
    if not 0 <= trainable <= 6:
        raise LungtkError(f"{name}: setting trainable={trainable}: use 0 (all) to 6 (the last k stages)")

    def loss(output: Any, batch: Any) -> Any:
        return torch.nn.functional.cross_entropy(output.float(), batch["label"], ignore_index=-1)

    binary = classes == 2
    return Task(
        name=name,
        architecture="luna-model",
        arch_args={
            "width": int(s["width"]),
            "patch": list(recipe.size),
            "classes": classes,
            "trainable": trainable,
        },
        loss=loss,
        metrics=BinaryClassificationMetric if binary else (lambda: MulticlassMetric(classes)),
        recipe=recipe,
        monitor="auc" if binary else "f1",
        config=s,
    )


def nodule_cnn(options: RunOptions) -> Any:
    return _luna_task(options, "nodule-cnn")


def malignancy_cnn(options: RunOptions) -> Any:
    return _luna_task(options, "malignancy-cnn")


def texture_cnn(options: RunOptions) -> Any:
    return _luna_task(options, "texture-cnn")


# -- seed 004: GGN pathology ---------------------------------------------------------------------------
# Seed 004's tasks over AAH+AIS / MIA / IAC (lungtk.core.labels): 1 all three; 2 AAH+AIS vs MIA+IAC;
# 3 AAH+AIS+MIA vs IAC; 4 AIS vs MIA (lungtk's classes keep AAH with AIS, so task 4 is AAH+AIS vs MIA).
GROUPINGS: dict[int, tuple[int, ...]] = {1: (0, 1, 2), 2: (0, 1, 1), 3: (0, 0, 1), 4: (0, 1, -1)}
MASKS = ("soft", "none", "truth")  # the cascade (c, d), raw CT (a), the ground-truth mask (b)
GGN_PATHOLOGY: dict[str, Any] = {  # seed 004: 32^3 at 0.7 x 0.7 x 1.0 mm, [-1024, 400] -> [-1, 1]
    "widths": "16,32,64,256",
    "hidden": 256,
    "seg_widths": "16,32,64,128",
    "seg_model": "",
    "mask": "soft",
    "joint": False,
    "lambda_seg": 1.0,
    "grouping": 1,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "schedule": "plateau",
    "gamma": 0.8,
    "plateau_patience": 10,
    "batch_size": 24,
    "epochs": 120,
    "steps_per_epoch": 22,  # 515 training nodules / 24
    "patch": "32",
    "spacing": "0.7,0.7,1.0",
    "window": "unit",
    "augmentation": "seed000",
    "sampler": "positive",
    "pos_fraction": 1.0,
    "jitter": 0.1,
    "positive_label": "pathology",
    "labelled_only": True,
    "val_patches": 128,
}


def _ints(text: Any, what: str, count: int) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != count or min(values) < 1:
        raise LungtkError(f"ggn-pathology: setting {what}={text!r}: give {count} positive whole numbers")
    return values


def grouped(batch: Any, grouping: tuple[int, ...]) -> Any:
    """The batch with its classes grouped (seed 004's tasks 2-4); -1 (no class, or left out) stays -1."""
    import torch

    label = batch["label"]
    table = torch.tensor([*grouping, -1], device=label.device)
    return {**batch, "label": table[label.clamp(min=-1)]}  # label -1 indexes the last cell, -1


class Relabel:
    """A validation metric that sees the grouped classes."""

    def __init__(self, inner: Any, grouping: tuple[int, ...]) -> None:
        self.inner, self.grouping = inner, grouping

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def update(self, output: Any, batch: Any) -> None:
        self.inner.update(output, grouped(batch, self.grouping))


def ggn_pathology(options: RunOptions) -> Any:
    import torch

    from lungtk.nn_blocks.losses import negative_squared_dice
    from lungtk.train.metrics import BinaryClassificationMetric, MulticlassMetric
    from lungtk.train.modelfile import load_model
    from lungtk.train.task import PatchRecipe, Task

    s = options.settings
    grouping = GROUPINGS.get(int(s["grouping"]))
    if grouping is None:
        raise LungtkError(
            f"ggn-pathology: setting grouping={s['grouping']}: use 1, 2, 3 or 4 (seed 004's tasks)"
        )
    classes = max(grouping) + 1
    mask = str(s["mask"])
    if mask not in MASKS:
        raise LungtkError(f"ggn-pathology: setting mask={mask!r}: use {', '.join(MASKS)}")
    recipe = PatchRecipe.from_config(s, target="mask")
    if any(p % 8 for p in recipe.size):
        raise LungtkError(f"ggn-pathology: setting patch={s['patch']}: each size must be a multiple of 8")
    joint, lam = bool(s["joint"]), float(s["lambda_seg"])
    seg_model = str(s["seg_model"] or "")
    cnn = {"widths": _ints(s["widths"], "widths", 4), "hidden": int(s["hidden"]), "patch": list(recipe.size)}

    if mask == "soft":
        architecture = "ggn-cascade"
        args = {**cnn, "classes": classes, "seg_widths": _ints(s["seg_widths"], "seg_widths", 4)}
        args["freeze_segmenter"] = not joint
    else:
        architecture, args = "ggn-cnn", {**cnn, "classes": classes}

    def forward(model: Any, batch: Any) -> Any:
        image = batch["image"] * batch["target"] if mask == "truth" else batch["image"]
        return model(image)

    def loss_fn(output: Any, batch: Any) -> Any:
        logits, seg = output if isinstance(output, tuple) else (output, None)
        label = grouped(batch, grouping)["label"]
        labelled = label >= 0  # patches of no (or a left-out) class add no classification loss
        value = (
            torch.nn.functional.cross_entropy(logits[labelled].float(), label[labelled])
            if bool(labelled.any())
            else logits.sum() * 0.0
        )
        if joint and seg is not None and lam:
            value = value + lam * negative_squared_dice(seg, batch["target"])
        return value

    def init_model(model: Any) -> None:
        if mask == "soft" and seg_model:
            loaded = load_model(seg_model, "dilated-unet", who="ggn-pathology's seg_model")
            model.segmenter.load_state_dict(loaded.model.state_dict())

    if mask == "soft" and not joint and not seg_model:
        raise LungtkError(
            "ggn-pathology: the frozen-mask cascade needs a trained segmenter: --set seg_model=FILE "
            "(a dilated-unet model file), or joint=true to train both networks"
        )
    metric = BinaryClassificationMetric if classes == 2 else (lambda: MulticlassMetric(classes))
    return Task(
        name="ggn-pathology",
        architecture=architecture,
        arch_args=args,
        loss=loss_fn,
        metrics=lambda: Relabel(metric(), grouping),
        recipe=recipe,
        monitor="auc" if classes == 2 else "f1",
        config=s,
        forward=forward,
        init_model=init_model,
    )
