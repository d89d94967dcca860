"""A training run's configuration: the engine's settings, a task's own, and how they are given.

A task registers its settings like any component (``registry.add(name, factory, settings={...})``); the
engine's settings below are declared for every task, and a task's value for an engine key replaces the
engine's default. The resolved configuration is one flat ``key -> value`` table: ``--config FILE.toml``
holds (part of) it, ``--set key=value`` changes one key, and ``RUN/config.toml`` is the whole of it.
Torch-free, so that ``lungtk train list`` and the plug-in hooks stay light.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lungtk.core import ComponentSpec, LungtkError
from lungtk.core.labels import TASK_LABELS
from lungtk.core.options import SettingValue, resolve_settings

# The defaults are nnU-Net v2's where it has one (SGD with Nesterov momentum 0.99, lr 0.01, poly decay
# with exponent 0.9, weight decay 3e-5, gradient norm clipped at 12, 250 steps per epoch, a third of the
# patches on foreground); a task replaces what its paper does differently.
ENGINE_DEFAULTS: dict[str, SettingValue] = {
    "seed": 0,
    "steps": 0,
    "epochs": 1000,
    "steps_per_epoch": 250,
    "batch_size": 2,
    "accumulate": 1,
    "optimizer": "sgd",
    "lr": 0.01,
    "weight_decay": 3e-5,
    "momentum": 0.99,
    "nesterov": True,
    "schedule": "poly",
    "poly_exponent": 0.9,
    "step_size": 1000,
    "gamma": 0.1,
    "plateau_patience": 10,
    "warmup_steps": 0,
    "warmup_factor": 0.01,
    "clip_grad": 12.0,
    "amp": "auto",
    "compile": False,
    "deterministic": True,
    "init": "",
    "train_only": "",
    "patch": "96",
    "spacing": "native",
    "window": "unit",
    "augmentation": "none",
    "sampler": "positive",
    "pos_fraction": 0.33,
    "balance_ratio": 1,
    "jitter": 0.5,
    "isample_every": 750,
    "isample_cells": 4,
    "targets": "auto",
    "positive_label": "",
    "labels": "nodule",
    "labelled_only": False,
    "grow_threshold_hu": -700.0,
    "val_fraction": 0.2,
    "fold": -1,
    "folds": 5,
    "split_seed": 0,
    "val_every": 0,
    "val_patches": 64,
    "monitor": "",
    "patience": 0,
    "checkpoint_every": 0,
    "log_every": 10,
    "num_workers": 2,
    "max_minutes": 0.0,
}

ENGINE_HELP: dict[str, str] = {
    "seed": "seeds the network's initialisation, the sampler, the augmentation and dropout",
    "steps": "optimizer steps of the run; 0: epochs * steps_per_epoch",
    "epochs": "epochs of the run when steps is 0",
    "steps_per_epoch": "optimizer steps per epoch (nnU-Net: 250)",
    "batch_size": "patches per step and process (DDP: per process)",
    "accumulate": "micro-batches whose gradients are summed before each optimizer step",
    "optimizer": "sgd, adamw or adam",
    "lr": "peak learning rate",
    "weight_decay": "weight decay (decoupled for adamw)",
    "momentum": "SGD momentum",
    "nesterov": "SGD with Nesterov momentum",
    "schedule": "constant, poly, cosine, step or plateau (after warm-up)",
    "poly_exponent": "poly: lr * (1 - t / T) ** exponent",
    "step_size": "step: multiply the lr by gamma every step_size steps",
    "gamma": "step / plateau: the factor",
    "plateau_patience": "plateau: validations without improvement before the lr is multiplied by gamma",
    "warmup_steps": "linear warm-up from warmup_factor * lr to lr over this many steps",
    "warmup_factor": "warm-up: the starting fraction of lr",
    "clip_grad": "clip the gradient's global norm at this value; 0: off",
    "amp": "mixed precision on CUDA: auto (bf16 where supported, else fp16), bf16, fp16 or off",
    "compile": "torch.compile the network",
    "deterministic": "deterministic algorithms (exact resume; turn off on a GPU for cudnn autotuning)",
    "init": "a .safetensors model file whose tensors initialise the network (fine-tuning)",
    "train_only": "train only the parameters whose names start with these comma-separated prefixes (e.g. "
    "texture_head: a joint head on a trained network, which stays as it is); empty: every parameter",
    "patch": "patch size in voxels, index,row,col (one number: a cube)",
    "spacing": "voxel size of the patches in mm, x,y,z (one number: isotropic), or native",
    "window": "intensity window: unit, luna, nodulenet (lungtk.ct_io.preprocess) or LOW,HIGH HU -> [0, 1]",
    "augmentation": "a lungtk.ct_io.augment preset (seed000, seed001, seed002) or none",
    "sampler": "positive (a fraction on nodules), balanced (alternate classes) or isample (error regions)",
    "pos_fraction": "positive sampler: the fraction of patches centred on a nodule",
    "balance_ratio": "balanced sampler: negatives per positive",
    "jitter": "how far a positive patch's centre moves off the nodule, as a fraction of half the patch",
    "isample_every": "isample: steps between refreshes of the error maps (seed 002: every 3 epochs)",
    "isample_cells": "isample: error-map cells per patch along each axis",
    "targets": "segmentation targets: auto (the data set's masks, else region growing), masks or grow",
    "grow_threshold_hu": "region-grown targets: voxels above this HU (seed 001: -700)",
    "positive_label": "segmentation patches also carry the class of the nodule they hold (texture or "
    "malignancy, from the data set's ratings; -1 when none), for joint heads such as seed 000's",
    "labelled_only": "segmentation with positive_label: patches only on nodules that have a class",
    "labels": "classification: a patch's class: nodule (the candidates table's class, nodule vs not) or "
    "malignancy, texture or pathology (an annotated nodule's, from the data set's ratings)",
    "val_fraction": "the fraction of patients held out for validation when fold is -1",
    "fold": "-1: a random patient split by val_fraction; k: validate on fold k of folds",
    "folds": "the number of folds (the data set's official folds where it publishes them)",
    "split_seed": "the seed of the patient split (kept apart from seed, so runs compare on one split)",
    "val_every": "steps between validations; 0: once per epoch",
    "val_patches": "validation patches (fixed for the run)",
    "monitor": "the validation metric that picks the best model; empty: the task's",
    "patience": "stop after this many validations without improvement; 0: never",
    "checkpoint_every": "steps between checkpoints; 0: at every validation",
    "log_every": "steps between lines of metrics.jsonl",
    "num_workers": "DataLoader worker processes (results do not depend on it)",
    "max_minutes": "stop cleanly after this many minutes of training (validate, checkpoint, write the model; "
    "--resume continues the schedule); 0: no limit",
}

# Keys that do not change what a run computes: a resumed run may change them.
RESUME_FREE = frozenset({"num_workers", "log_every", "checkpoint_every", "compile", "max_minutes"})
LIMITS: dict[str, tuple[float, float]] = {
    "steps": (0, math.inf),
    "epochs": (1, math.inf),
    "steps_per_epoch": (1, math.inf),
    "batch_size": (1, math.inf),
    "accumulate": (1, math.inf),
    "lr": (0, math.inf),
    "weight_decay": (0, math.inf),
    "clip_grad": (0, math.inf),
    "pos_fraction": (0, 1),
    "jitter": (0, 1),
    "val_fraction": (0, 0.9),
    "balance_ratio": (1, math.inf),
    "isample_every": (1, math.inf),
    "isample_cells": (1, 64),
    "val_patches": (1, math.inf),
    "num_workers": (0, 256),
    "warmup_steps": (0, math.inf),
    "warmup_factor": (0, 1),
    "log_every": (1, math.inf),
    "folds": (2, math.inf),
    "max_minutes": (0, math.inf),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adamw", "adam"),
    "schedule": ("constant", "poly", "cosine", "step", "plateau"),
    "amp": ("auto", "bf16", "fp16", "off"),
    "sampler": ("positive", "balanced", "isample"),
    "targets": ("auto", "masks", "grow"),
    "labels": tuple(TASK_LABELS),
}


def declared_settings(spec: ComponentSpec) -> dict[str, SettingValue]:
    """The engine's settings, with the task's defaults over them, plus the task's own."""
    return {**ENGINE_DEFAULTS, **spec.settings}


def resolve_config(spec: ComponentSpec, given: Mapping[str, Any]) -> dict[str, SettingValue]:
    """Every setting of task ``spec``, typed, with ``given`` applied; unknown keys fail with a suggestion."""
    config = resolve_settings(spec.name, declared_settings(spec), given)
    check_config(config)
    return config


def check_config(config: Mapping[str, SettingValue]) -> None:
    for key, (low, high) in LIMITS.items():
        if key in config and not low <= float(config[key]) <= high:  # type: ignore[arg-type]
            span = f"{low:g} or more" if math.isinf(high) else f"between {low:g} and {high:g}"
            raise LungtkError(f"setting {key}={config[key]}: use a value {span}")
    for key, choices in CHOICES.items():
        if key in config and config[key] not in choices:
            close = difflib.get_close_matches(str(config[key]), choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise LungtkError(f"setting {key}={config[key]!r}{hint} (choose {', '.join(choices)})")
    if "patch" in config:
        parse_patch(str(config["patch"]))
    if "spacing" in config:
        parse_spacing(str(config["spacing"]))
    if config.get("schedule") == "step" and int(config.get("step_size", 1)) < 1:  # type: ignore[arg-type]
        raise LungtkError("setting step_size: the step schedule needs a step_size of 1 or more")


def total_steps(config: Mapping[str, Any]) -> int:
    steps = int(config["steps"])
    return steps if steps > 0 else int(config["epochs"]) * int(config["steps_per_epoch"])


def val_every(config: Mapping[str, Any]) -> int:
    every = int(config["val_every"])
    return every if every > 0 else int(config["steps_per_epoch"])


def checkpoint_every(config: Mapping[str, Any]) -> int:
    every = int(config["checkpoint_every"])
    return every if every > 0 else val_every(config)


def _numbers(text: str, what: str, kind: type, count: int) -> tuple[Any, ...]:
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(kind(p.strip()) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * count
    if len(values) != count or any(not (v > 0) or not math.isfinite(v) for v in values):
        raise LungtkError(
            f"setting {what}={text!r}: give one positive number or {count}, e.g. 32 or 32,48,48"
        )
    return values


def parse_patch(text: str) -> tuple[int, int, int]:
    """``"32"`` -> (32, 32, 32); ``"32,48,48"`` -> (index, row, col) voxels."""
    return _numbers(str(text), "patch", int, 3)  # type: ignore[return-value]


def parse_spacing(text: str) -> tuple[float, float, float] | None:
    """``"native"`` -> None; ``"1"`` -> (1, 1, 1); ``"0.7,0.7,1.25"`` -> (x, y, z) mm."""
    if str(text).strip().lower() == "native":
        return None
    return _numbers(str(text), "spacing", float, 3)  # type: ignore[return-value]


# -- where the values come from ------------------------------------------------------------------------


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file of settings: a flat table (``lr = 0.01``), optionally with a ``[run]`` table as
    ``RUN/config.toml`` has (its ``task`` is returned under the key ``"[run]"``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LungtkError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LungtkError(f"--config {path}: not valid TOML ({exc})") from None
    run = data.pop("run", None)
    settings = data.pop("settings", None)
    if isinstance(settings, dict):
        data.update(settings)
    for key, value in data.items():
        if isinstance(value, dict | list):
            raise LungtkError(
                f"--config {path}: '{key}' is a table or a list; settings are single values (key = value)"
            )
    if isinstance(run, dict):
        data["[run]"] = run
    return data


def parse_set(items: Iterable[str], task: str) -> dict[str, str]:
    """``["lr=0.01", "unet-tiny.patch=32"]`` -> ``{"lr": "0.01", "patch": "32"}``."""
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if key.startswith(f"{task}."):
            key = key[len(task) + 1 :]
        if not sep or not key:
            raise LungtkError(f"--set {item!r}: write it as KEY=VALUE, e.g. lr=0.01")
        given[key] = value.strip()
    return given


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def to_toml(settings: Mapping[str, Any], run: Mapping[str, Any] | None = None) -> str:
    """``RUN/config.toml``: the settings (readable back with ``--config``) and what the run was."""
    lines = ["# lungtk train: the resolved configuration of this run (usable as --config)"]
    for key in sorted(settings):
        comment = ENGINE_HELP.get(key)
        lines.append(f"{key} = {_toml_value(settings[key])}" + (f"  # {comment}" if comment else ""))
    if run:
        lines += ["", "[run]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in run.items() if value is not None]
    return "\n".join(lines) + "\n"


# Schedules whose learning rate at a step does not depend on the run's length: a resumed run of one of
# them may be lengthened or shortened (--steps / --epochs), and reaches the same weights at each step.
LENGTH_FREE_SCHEDULES = ("constant", "step", "plateau")
LENGTH_KEYS = frozenset({"steps", "epochs"})


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every key (but the resume-free ones) whose value differs; the run's length
    too, unless its schedule does not depend on it."""
    free = RESUME_FREE
    if old.get("schedule") == new.get("schedule") in LENGTH_FREE_SCHEDULES:
        free = free | LENGTH_KEYS
    keys = sorted((set(old) | set(new)) - free)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
