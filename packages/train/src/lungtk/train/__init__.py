"""lungtk.train: the training engine of lungtk's networks.

A plug-in registers a training task (``lungtk_register_tasks``); the engine turns a data folder into
patches (through the volume cache), trains the task's network (mixed precision on CUDA, exact resume,
torchrun DDP) and writes a run folder whose ``model.safetensors`` any component loads with
:func:`load_model`.

    >>> from lungtk.train import plan, train
    >>> result = train(plan("unet-tiny", "phantoms/", "runs/tiny", {"steps": 200}))
    >>> result.model
    PosixPath('runs/tiny/model.safetensors')

Modules: ``task`` (Task, PatchRecipe), ``config`` (settings), ``data`` (sources, targets, samplers,
patches), ``loop`` (Trainer), ``schedules``, ``metrics``, ``checkpoint``, ``modelfile``,
``architectures``, ``distributed``, ``isample``, ``run``. Importing this package imports no torch; the
names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Task": "lungtk.train.task",
    "PatchRecipe": "lungtk.train.task",
    "find_task": "lungtk.train.task",
    "create_task": "lungtk.train.task",
    "Trainer": "lungtk.train.loop",
    "plan": "lungtk.train.run",
    "train": "lungtk.train.run",
    "load_model": "lungtk.train.modelfile",
    "save_model": "lungtk.train.modelfile",
    "read_header": "lungtk.train.modelfile",
    "register_architecture": "lungtk.train.architectures",
    "build_architecture": "lungtk.train.architectures",
    "Metric": "lungtk.train.metrics",
    "SegmentationMetric": "lungtk.train.metrics",
    "BinaryClassificationMetric": "lungtk.train.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lungtk.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
