"""Training tasks: what a plug-in registers with ``lungtk_register_tasks`` and the engine trains.

A task is registered like any component, with its settings (its defaults for the engine's keys, see
:mod:`lungtk.train.config`, plus its own)::

    @hookimpl
    def lungtk_register_tasks(registry):
        registry.add("resunet", "lungtk.seg.tasks:resunet", summary="...",
                     settings={"optimizer": "adam", "lr": 1e-4, "patch": "80", "width": 32})

and its factory receives a ``RunOptions`` whose ``settings`` are the whole resolved configuration, and
returns a :class:`Task`: the network (an architecture name and arguments, so the model file can rebuild
it), the loss, the patch recipe, the metrics and the metric that picks the best model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lungtk.core import ComponentSpec, LungtkError, RunOptions, get_plugins
from lungtk.core.labels import NODULE
from lungtk.train.config import parse_patch, parse_spacing
from lungtk.train.metrics import Metric


@dataclass(frozen=True)
class PatchRecipe:
    """How patches are made: size, spacing, window, augmentation, sampler and the kind of target
    (``mask``: a voxel mask, segmentation and detection; ``label``: the candidate's class, classification;
    ``none``: the image alone, self-supervised pre-training on unlabelled scans)."""

    size: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float] | None
    window: str
    augmentation: str
    sampler: str
    target: str = "mask"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], target: str = "mask") -> PatchRecipe:
        return cls(
            size=parse_patch(str(config["patch"])),
            spacing_xyz=parse_spacing(str(config["spacing"])),
            window=str(config["window"]),
            augmentation=str(config["augmentation"]),
            sampler=str(config["sampler"]),
            target=target,
        )


def default_forward(model: Any, batch: Mapping[str, Any]) -> Any:
    return model(batch["image"])


@dataclass
class Task:
    """A trainable task. ``loss(output, batch)`` and ``metrics().update(output, batch)`` see the model's
    output and the whole batch (``image`` and ``target`` or ``label``), so a task can use any of it."""

    name: str
    architecture: str
    arch_args: Mapping[str, Any]
    loss: Callable[[Any, Mapping[str, Any]], Any]
    metrics: Callable[[], Metric]
    recipe: PatchRecipe
    monitor: str
    maximize: bool = True
    config: Mapping[str, Any] = field(default_factory=dict)
    forward: Callable[[Any, Mapping[str, Any]], Any] = default_forward
    on_validation: Callable[[Mapping[str, float]], None] | None = None
    """Called with each validation's metrics (e.g. seed 000 switches its CE term on at an IoU); state it
    changes belongs in the loss module, whose state checkpoints keep."""

    init_model: Callable[[Any], None] | None = None
    """Called on the new network before training (after ``init``): a task that starts parts of it from
    other model files (seed 004's cascade takes its segmenter from a dilated-unet file) does it here."""

    init_architectures: tuple[str, ...] = ()
    """Architectures besides the task's own whose model files setting ``init`` may name (the tensors whose
    names and shapes match are copied): ``nodulenet`` starts from a ``genesis`` pre-training."""

    @property
    def init_accepts(self) -> tuple[str, ...]:
        """The architectures a fine-tuning model file (setting ``init``) may hold."""
        return (self.architecture, *self.init_architectures)

    def build_model(self) -> Any:
        from lungtk.train.architectures import build_architecture

        return build_architecture(self.architecture, self.arch_args)

    def preprocessing(self) -> dict[str, Any]:
        """What a model file records so that inference prepares scans as training did."""
        from lungtk.ct_io.preprocess import get_window

        window = get_window(self.recipe.window)
        out = {
            "spacing": list(self.recipe.spacing_xyz) if self.recipe.spacing_xyz else "native",
            "patch": list(self.recipe.size),
            "window": self.recipe.window,
            "window_hu": [window.low, window.high],
            "window_out": None if window.out_low is None else [window.out_low, window.out_high],
            "input": "CT in HU, one channel, array order (index, row, col); spacing in mm (x, y, z)",
            "target": self.recipe.target,
        }
        if self.recipe.target == "label":  # the classification task whose labels the outputs are
            out["labels"] = str(self.config.get("labels") or NODULE)
        elif self.config.get("positive_label"):  # a joint head's (seed 000's texture, seed 004's pathology)
            out["labels"] = str(self.config["positive_label"])
        return out


def find_task(name: str) -> ComponentSpec:
    """The registered task ``name`` (an unknown name fails with a suggestion)."""
    return get_plugins().registry.get("task", name)


def create_task(
    spec: ComponentSpec, config: Mapping[str, Any], device: str = "cpu", precision: str = "fp32"
) -> Task:
    """Call the task's factory with the resolved configuration as its settings."""
    options = RunOptions(device, precision, int(config["batch_size"]), None, dict(config))  # type: ignore[arg-type]
    task = spec.load()(options)
    if not isinstance(task, Task):
        raise LungtkError(
            f"task '{spec.name}' from {spec.provider} returned {type(task).__name__}, not a lungtk.train Task"
        )
    return task
