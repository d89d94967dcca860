"""One training run, from a task name and a data folder to a model file: what ``lungtk train`` calls.

:func:`plan` resolves and checks everything a user can get wrong (task, settings, device, resume, data
folder, labels) before any training starts; :func:`train` runs it (in each torchrun process when there
are several) and writes the run folder:

- ``config.toml``: the resolved configuration (usable as ``--config``) and a ``[run]`` table;
- ``splits.json``: the training and validation scans;
- ``metrics.jsonl``, ``curves.png``: training loss and validation metrics by step;
- ``checkpoints/last.pt``: everything to resume exactly; ``checkpoints/best.pt``: the best network;
- ``model.safetensors``: the exported network (the best validated one; the last one without validation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungtk.core import ComponentSpec, LungtkError, write_text
from lungtk.train.config import differences, read_config_file, resolve_config, to_toml, total_steps

MODEL_FILE = "model.safetensors"
LAST = Path("checkpoints") / "last.pt"


@dataclass
class Plan:
    """A checked run: the task, its resolved configuration and, when resuming, the checkpoint."""

    spec: ComponentSpec
    config: dict[str, Any]
    data: Path
    out: Path
    device: str
    layout: str = "auto"
    resume_state: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return total_steps(self.config)


@dataclass
class Result:
    run_dir: Path
    model: Path | None
    step: int
    total: int
    stopped: str
    best: dict[str, Any] | None
    final_loss: float | None


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when there is a GPU, else cpu; ``cuda[:N]`` must exist."""
    import torch

    device = device.strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise LungtkError(
                f"--device {device}: no CUDA device is available here (torch {torch.__version__}); "
                "use --device cpu or auto"
            )
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise LungtkError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return device
    raise LungtkError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")


def gather_settings(
    config_file: Path | None, assignments: Mapping[str, Any], explicit: Mapping[str, Any], task: str
) -> dict[str, Any]:
    """Settings given by the user: the config file, then ``--set``, then the options (--steps, --seed...)."""
    given: dict[str, Any] = {}
    if config_file is not None:
        from_file = read_config_file(config_file)
        run = from_file.pop("[run]", None)
        if isinstance(run, dict) and run.get("task") not in (None, task):
            raise LungtkError(
                f"--config {config_file}: it is the configuration of task '{run['task']}', not '{task}'"
            )
        given.update(from_file)
    given.update(assignments)
    given.update(explicit)
    return given


def plan(
    task: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    given: Mapping[str, Any],
    *,
    device: str = "auto",
    resume: bool = False,
    layout: str = "auto",
    processes: int = 1,
) -> Plan:
    """Resolve the configuration and check the run folder (a clear error for each mistake);
    ``processes``: how many will train (a run resumes with as many as it started with)."""
    from lungtk.train.checkpoint import load_checkpoint
    from lungtk.train.task import find_task

    spec = find_task(task)
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise LungtkError(f"--data {data}: not a folder")
    last = out / LAST
    state = None
    if resume:
        if not last.is_file():
            raise LungtkError(f"--resume: {last} does not exist; start the run without --resume")
        state = load_checkpoint(last)
        if state.get("kind") != "last" or "config" not in state:
            raise LungtkError(f"{last}: not the last checkpoint of a run")
        if state["task"] != task:
            raise LungtkError(f"--resume: {out} is a run of task '{state['task']}', not '{task}'")
        if int(state["world_size"]) != processes:
            raise LungtkError(
                f"--resume: {out} was trained by {state['world_size']} process(es), not {processes}; "
                f"resume it with --nproc {state['world_size']}"
            )
        config = resolve_config(spec, {**state["config"], **given})
        changed = differences(state["config"], config)
        if changed:
            raise LungtkError(
                f"--resume: the configuration differs from the run's in {out / 'config.toml'} "
                f"({'; '.join(changed)}); resume with the same settings, or train into a new --out"
            )
    else:
        if last.is_file():
            raise LungtkError(
                f"{out} already holds a run ({last}); add --resume to continue it or pick a new --out"
            )
        config = resolve_config(spec, given)
    return Plan(spec, config, data, out, resolve_device(device), layout, state)


def setup_determinism(config: Mapping[str, Any], device: str) -> None:
    import torch

    deterministic = bool(config["deterministic"])
    if deterministic and device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if bool(config["compile"]) or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    else:  # the same switch, without importing torch's compiler to set its option too (seconds per process)
        torch._C._set_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def prepare_data(the_plan: Plan, target: str, *, dist: Any = None, on_event: Any = None) -> Any:
    """Index the data folder, split it by patient, decode the scans into the volume cache and build the
    datasets, the sampler and the validation patches."""
    from lungtk.ct_io.cache import VolumeCache
    from lungtk.ct_io.datasets import open_dataset
    from lungtk.train.data.patches import PatchDataset, PatchGeometry
    from lungtk.train.data.samplers import PatchSampler, validation_requests
    from lungtk.train.data.sources import build_records, check_labels, make_splits
    from lungtk.train.distributed import Dist
    from lungtk.train.loop import TrainData
    from lungtk.train.task import PatchRecipe

    dist = dist or Dist()
    config = the_plan.config
    notify = on_event or (lambda kind, info: None)
    index = open_dataset(the_plan.data, the_plan.layout)
    splits = make_splits(index, config)
    if the_plan.resume_state is not None and the_plan.resume_state["splits"] != splits:
        raise LungtkError(
            f"--resume: the scans of {the_plan.data} or their split differ from those the run started with "
            f"(see {the_plan.out / 'splits.json'})"
        )
    cache = VolumeCache()
    recipe = PatchRecipe.from_config(config, target)
    uids = splits["train"] + splits["val"]
    records: dict[str, Any] = {}

    def build() -> None:
        done = 0

        def tick(uid: str) -> None:
            nonlocal done
            done += 1
            notify("prepare", {"done": done, "total": len(uids)})

        for name in ("train", "val"):
            records[name] = build_records(
                index, splits[name], config, target=target, cache=cache, on_scan=tick
            )

    if dist.is_main:  # rank 0 decodes every scan into the cache; the others then map it
        build()
    dist.barrier()
    if not dist.is_main:
        build()
    check_labels(records["train"], target, the_plan.spec.name, the_plan.data, str(config["labels"]))
    geometry = PatchGeometry(recipe.size, recipe.spacing_xyz)
    extent = [geometry.extent(r.spacing_irc) for r in records["train"]]
    sampler = PatchSampler(
        records["train"],
        kind=recipe.sampler,
        seed=int(config["seed"]),
        extent=extent,
        target=target,
        pos_fraction=float(config["pos_fraction"]),
        balance_ratio=int(config["balance_ratio"]),
        jitter=float(config["jitter"]),
    )
    train_ds = PatchDataset(
        records["train"],
        geometry,
        window=recipe.window,
        augmentation=recipe.augmentation,
        target=target,
        cache_root=cache.root,
    )
    val_ds, val_requests = None, []
    if records["val"]:
        val_ds = PatchDataset(
            records["val"], geometry, window=recipe.window, target=target, cache_root=cache.root
        )
        val_requests = validation_requests(
            records["val"],
            int(config["val_patches"]),
            int(config["split_seed"]),
            [geometry.extent(r.spacing_irc) for r in records["val"]],
            target,
        )
    return TrainData(train_ds, sampler, val_ds, val_requests, splits), index


def train(the_plan: Plan, *, on_event: Any = None) -> Result:
    """Run the plan in this process (one of several under torchrun) and export the model file."""
    import torch

    from lungtk.train.distributed import Dist
    from lungtk.train.loop import Trainer
    from lungtk.train.modelfile import lungtk_version, save_model
    from lungtk.train.task import create_task

    dist = Dist.from_env(the_plan.device)
    device = dist.device_for(the_plan.device)
    config = the_plan.config
    setup_determinism(config, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    from lungtk.train.loop import amp_dtype

    task = create_task(the_plan.spec, config, device, precision[amp_dtype(str(config["amp"]), device)])
    check_init(config, task.init_accepts)
    data, index = prepare_data(
        the_plan, task.recipe.target, dist=dist, on_event=on_event if dist.is_main else None
    )
    out = the_plan.out
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        run_info = {
            "task": task.name,
            "data": str(the_plan.data.resolve()),
            "layout": index.name,
            "device": the_plan.device,
            "processes": dist.world,
            "lungtk_version": lungtk_version(),
        }
        write_text(out / "config.toml", to_toml(config, run_info))
        write_text(out / "splits.json", json.dumps(data.splits, indent=1) + "\n")
    trainer = Trainer(task, data, out, device=device, dist=dist, on_event=on_event if dist.is_main else None)
    outcome = trainer.fit(the_plan.resume_state)
    model_path = None
    if dist.is_main:
        selected, weights_step, weights = trainer.selected_weights()
        metrics = dict((trainer.best or {}).get("metrics") or trainer.last_metrics or {})
        model_path = save_model(
            out / MODEL_FILE,
            weights,
            architecture=task.architecture,
            arch_args=task.arch_args,
            preprocessing=task.preprocessing(),
            task=task.name,
            training={
                "data": str(the_plan.data.resolve()),
                "dataset": index.name,
                "scans": {k: len(v) for k, v in data.splits.items()},
                "config": config,
                "steps": outcome.step,
                "total_steps": outcome.total,
                "selected": selected,
                "weights_step": weights_step,
                "monitor": trainer.monitor,
                "stopped": outcome.stopped,
                "processes": dist.world,
                "device": device,
            },
            metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        )
    dist.barrier()
    dist.close()
    return Result(
        out, model_path, outcome.step, outcome.total, outcome.stopped, outcome.best, outcome.final_loss
    )


def check_init(config: Mapping[str, Any], architectures: str | Sequence[str]) -> None:
    """A fine-tuning model file (setting ``init``) must hold the task's architecture (or one the task
    lists as a starting point, :attr:`Task.init_architectures`)."""
    if str(config.get("init") or ""):
        from lungtk.train.modelfile import check_architecture, read_header

        check_architecture(read_header(config["init"]), architectures, "setting init")


def check_data(the_plan: Plan, target: str) -> None:
    """Everything about the data folder a run would fail on, checked in this process (used before
    starting torchrun, so that a mistake is reported once)."""
    prepare_data(the_plan, target)


def task_target(the_plan: Plan) -> str:
    """The kind of target the plan's task trains on (checking its ``init`` file on the way)."""
    from lungtk.train.task import create_task

    task = create_task(the_plan.spec, the_plan.config)
    check_init(the_plan.config, task.init_accepts)
    return task.recipe.target
