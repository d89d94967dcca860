"""The training loop: optimizer and schedule, AMP on CUDA, clipping and accumulation, validation every N
steps with the task's metrics, the best model by a metric, early stopping, checkpoints that resume
exactly, and torchrun DDP."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lungtk.core import LungtkError
from lungtk.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from lungtk.train.config import checkpoint_every, total_steps, val_every
from lungtk.train.data.patches import PatchDataset
from lungtk.train.data.samplers import PatchRequest, PatchSampler
from lungtk.train.distributed import Dist
from lungtk.train.runlog import MetricsLog, plot_curves
from lungtk.train.schedules import Schedule
from lungtk.train.task import Task

KILL_ENV = "LUNGTK_TRAIN_KILL_AT"
"""Testing hook: the process kills itself (SIGKILL) right after this optimizer step, as a crash would."""

Event = Callable[[str, Mapping[str, Any]], None]
PLOT_EVERY_S = 60.0  # curves.png is redrawn at a checkpoint at most this often, and at the end


@dataclass
class TrainData:
    """What the loop trains and validates on (built by :mod:`lungtk.train.run`)."""

    train: PatchDataset
    sampler: PatchSampler
    val: PatchDataset | None = None
    val_requests: list[PatchRequest] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Outcome:
    step: int
    total: int
    best: dict[str, Any] | None
    last_metrics: dict[str, float] | None
    stopped: str
    final_loss: float | None


class _Requests(torch.utils.data.Sampler):
    """A DataLoader sampler over an endless stream of requests."""

    def __init__(self, stream: Iterator[PatchRequest]) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[PatchRequest]:
        return self.stream


def _seed_worker(worker_id: int) -> None:
    """Seed a worker's global generators from the loader's seed (the patches themselves are seeded by
    their requests; this covers any global draw a task's code makes)."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_optimizer(params: Any, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    kind, lr, wd = str(config["optimizer"]), float(config["lr"]), float(config["weight_decay"])
    if kind == "sgd":
        momentum = float(config["momentum"])
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=wd,
            nesterov=bool(config["nesterov"]) and momentum > 0,
        )
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def freeze_except(model: torch.nn.Module, prefixes: str) -> None:
    """Setting ``train_only``: only the parameters whose names start with one of the comma-separated
    ``prefixes`` keep training; empty: all of them."""
    wanted = tuple(p.strip() for p in prefixes.split(",") if p.strip())
    if not wanted:
        return
    names = [name for name, _ in model.named_parameters()]
    unmatched = [w for w in wanted if not any(n.startswith(w) for n in names)]
    if unmatched:
        tops = sorted({n.split(".")[0] for n in names})
        raise LungtkError(
            f"setting train_only={prefixes!r}: no parameter starts with {', '.join(unmatched)}; "
            f"this network's parts are {', '.join(tops)}"
        )
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(wanted))


def amp_dtype(setting: str, device: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full precision). AMP runs on CUDA only."""
    if setting == "off" or not device.startswith("cuda"):
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _to(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    non_blocking = device.startswith("cuda")
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    def __init__(
        self,
        task: Task,
        data: TrainData,
        run_dir: Path,
        *,
        device: str = "cpu",
        dist: Dist | None = None,
        on_event: Event | None = None,
    ) -> None:
        self.task, self.data, self.run_dir = task, data, Path(run_dir)
        self.config = dict(task.config)
        self.device = device
        self.dist = dist or Dist()
        self.on_event = on_event or (lambda kind, info: None)
        self.total = total_steps(self.config)
        self.batch, self.accumulate = int(self.config["batch_size"]), int(self.config["accumulate"])
        self.seed = int(self.config["seed"])
        self.monitor = str(self.config["monitor"]) or task.monitor
        self.amp = amp_dtype(str(self.config["amp"]), device)
        self.checkpoints = self.run_dir / "checkpoints"
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.dist.is_main)
        self._plotted = time.monotonic()

    # -- setup ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        torch.manual_seed(self.seed)
        model = self.task.build_model()
        init = str(self.config.get("init") or "")
        if init:
            from lungtk.train.modelfile import init_from

            init_from(model, init, self.task.init_accepts)
        if self.task.init_model is not None:
            self.task.init_model(model)
        freeze_except(model, str(self.config.get("train_only") or ""))
        self.model = model.to(self.device)
        self.net: Any = self.model
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if bool(self.config["compile"]):
            self.net = torch.compile(self.net)
        self.loss_fn = self.task.loss
        if isinstance(self.loss_fn, torch.nn.Module):
            self.loss_fn.to(self.device)
        self.optimizer = make_optimizer([p for p in self.model.parameters() if p.requires_grad], self.config)
        self.schedule = Schedule.from_config(self.config, self.total)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.step = 0
        self.best: dict[str, Any] | None = None
        self.bad_validations = 0
        self.last_metrics: dict[str, float] | None = None
        self.isample_step = -1

    def autocast(self) -> Any:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp)

    def _loss_state(self) -> dict[str, Any] | None:
        return self.loss_fn.state_dict() if isinstance(self.loss_fn, torch.nn.Module) else None

    def _state(self, done: bool, stopped: str) -> dict[str, Any]:
        rngs = self.dist.gather(rng_state())
        return {
            "kind": "last",
            "task": self.task.name,
            "config": self.config,
            "splits": self.data.splits,
            "world_size": self.dist.world,
            "step": self.step,
            "samples": self.step * self.batch * self.accumulate * self.dist.world,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "loss": self._loss_state(),
            "rng": rngs,
            "best": self.best,
            "bad_validations": self.bad_validations,
            "last_metrics": self.last_metrics,
            "isample_step": self.isample_step,
            "done": done,
            "stopped": stopped,
        }

    def resume(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's contents (as :func:`load_checkpoint` read them)."""
        if int(state["world_size"]) != self.dist.world:
            raise LungtkError(
                f"the checkpoint was written by {state['world_size']} process(es); resume it with "
                f"--nproc {state['world_size']} (now {self.dist.world})"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise LungtkError(
                f"the checkpoint does not fit task '{self.task.name}''s network: {exc}"
            ) from None
        self.schedule.load_state_dict(state["schedule"])
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if state.get("loss") is not None and isinstance(self.loss_fn, torch.nn.Module):
            self.loss_fn.load_state_dict(state["loss"])
        self.step = int(state["step"])
        self.best = state["best"]
        self.bad_validations = int(state["bad_validations"])
        self.last_metrics = state["last_metrics"]
        self.isample_step = int(state["isample_step"])
        set_rng_state(state["rng"][self.dist.rank])

    # -- data ----------------------------------------------------------------------------------------------
    def _loader(self, dataset: PatchDataset, requests: Any, seed: int) -> torch.utils.data.DataLoader:
        """Batches of ``dataset`` at ``requests`` (a sampler or a list). The loader gets its own generator,
        so creating one never draws from the global generator a resumed run restores."""
        workers = int(self.config["num_workers"])
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch,
            sampler=requests,
            num_workers=workers,
            pin_memory=self.device.startswith("cuda"),
            worker_init_fn=_seed_worker if workers else None,
            generator=torch.Generator().manual_seed(seed),
            prefetch_factor=4 if workers else None,
        )

    def _train_batches(self) -> Iterator[dict[str, Any]]:
        per_step = self.batch * self.accumulate
        stream = self.data.sampler.stream(self.step, per_step, self.dist.rank, self.dist.world)
        return iter(self._loader(self.data.train, _Requests(stream), self.seed * 1000003 + self.step))

    # -- validation ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        assert self.data.val is not None
        metric = self.task.metrics()
        loss_sum = torch.zeros((), dtype=torch.float64)
        count = torch.zeros((), dtype=torch.float64)
        mine = self.data.val_requests[self.dist.rank :: self.dist.world]
        self.model.eval()
        if mine:
            loader = self._loader(self.data.val, mine, self.seed)
            for batch in loader:
                batch = _to(batch, self.device)
                with self.autocast():
                    output = self.task.forward(self.model, batch)
                    loss = self.loss_fn(output, batch)
                metric.update(output, batch)
                n = len(batch["image"])
                loss_sum += float(loss) * n
                count += n
        self.model.train()
        metric.reduce(self.dist.all_reduce_sum if self.dist.active else None)
        loss_sum, count = self.dist.all_reduce_sum(loss_sum), self.dist.all_reduce_sum(count)
        values = metric.compute()
        values["loss"] = float(loss_sum / count) if count else float("nan")
        return values

    # -- the loop ------------------------------------------------------------------------------------------
    def fit(self, resume_state: Mapping[str, Any] | None = None) -> Outcome:
        self._build()
        if resume_state is not None:
            self.resume(resume_state)
        if self.dist.is_main:
            self.log.truncate(self.step)
        if resume_state is not None and resume_state.get("done"):
            return Outcome(
                self.step, self.total, self.best, self.last_metrics, str(resume_state["stopped"]), None
            )
        try:
            return self._loop()
        except torch.cuda.OutOfMemoryError:
            patch = self.config["patch"]
            raise LungtkError(
                f"out of GPU memory on {self.device} at batch_size={self.batch}, patch={patch}: lower "
                f"--set batch_size={max(1, self.batch // 2)} (add --set accumulate={self.accumulate * 2} to "
                f"keep the effective batch) or --set patch=..., or use --set amp=bf16"
            ) from None

    def _refresh_isample(self) -> None:
        from lungtk.train.isample import compute_error_maps, load_error_maps

        cells = int(self.config["isample_cells"])
        if self.isample_step >= 0 and self.data.sampler.error_maps is None:  # resumed: the same maps
            self.data.sampler.error_maps = load_error_maps(
                self.data.train, self.run_dir, self.isample_step, cells
            )
        every = int(self.config["isample_every"])
        if self.step % every == 0 and self.isample_step != self.step:
            self.on_event("isample", {"step": self.step})
            self.data.sampler.error_maps = compute_error_maps(
                self.model,
                self.data.train,
                self.run_dir,
                self.step,
                cells,
                self.device,
                self.autocast,
                self.dist,
            )
            self.isample_step = self.step

    def _loop(self) -> Outcome:
        config = self.config
        base_lr = float(config["lr"])
        clip = float(config["clip_grad"])
        v_every, c_every, l_every = val_every(config), checkpoint_every(config), int(config["log_every"])
        patience = int(self.config["patience"])
        minutes = float(config["max_minutes"])
        deadline = time.monotonic() + 60.0 * minutes if minutes > 0 else None
        validates = self.data.val is not None and bool(self.data.val_requests)
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        per_step = self.batch * self.accumulate * self.dist.world
        isample = self.data.sampler.kind == "isample"
        self.on_event("start", {"step": self.step, "total": self.total})
        batches: Iterator[dict[str, Any]] | None = None
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        loss_count, interval_time, interval_steps = 0, 0.0, 0
        stopped, final_loss = "done", None
        self.net.train()
        while self.step < self.total:
            if isample:
                before = self.isample_step
                self._refresh_isample()
                if self.isample_step != before:
                    batches = None  # prefetched requests were drawn from the old maps
            if batches is None:
                batches = self._train_batches()
            started = time.perf_counter()
            lr = base_lr * self.schedule.factor(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(self.accumulate):
                batch = _to(next(batches), self.device)
                sync = micro == self.accumulate - 1 or not self.dist.active
                with contextlib.nullcontext() if sync else self.net.no_sync(), self.autocast():
                    output = self.task.forward(self.net, batch)
                    loss = self.loss_fn(output, batch)
                if not torch.isfinite(loss):
                    raise LungtkError(
                        f"the loss became {float(loss)} at step {self.step + 1}: lower the learning rate "
                        f"(--set lr={base_lr / 10:g}) or use --set amp=bf16 / --no-amp"
                    )
                if not loss.requires_grad:
                    raise LungtkError(
                        f"the loss does not depend on any trained parameter (setting train_only="
                        f"{config.get('train_only')!r}): name parts of the network the loss reaches"
                    )
                self.scaler.scale(loss / self.accumulate).backward()
                loss_sum += loss.detach().double()
                loss_count += 1
            if clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            interval_steps += 1
            interval_time += time.perf_counter() - started

            if self.step % l_every == 0 or self.step == self.total:
                mean = self.dist.all_reduce_sum(loss_sum.cpu()) / (loss_count * self.dist.world)
                final_loss = float(mean)
                record = {
                    "step": self.step,
                    "epoch": self.step / int(config["steps_per_epoch"]),
                    "loss": final_loss,
                    "lr": lr,
                    "patches_per_s": interval_steps * per_step / interval_time if interval_time > 0 else None,
                }
                self.log.write(record)
                self.on_event("log", record)
                loss_sum.zero_()
                loss_count, interval_time, interval_steps = 0, 0.0, 0

            due = validates and (self.step % v_every == 0 or self.step == self.total)
            late = deadline is not None and self.step < self.total and self._past(deadline)
            # a validation off the schedule (the time limit's) is looked at, not counted: it moves no
            # patience, plateau schedule or task hook, so a resumed run continues as an uninterrupted one
            stop = self._validation(patience, counted=due) if due or (late and validates) else False
            if stop:
                stopped = "early"
            elif late:
                stop, stopped = True, "time"  # not done: --resume continues the schedule
            if self.step % c_every == 0 or self.step == self.total or stop:
                self.save(done=(stop and stopped == "early") or self.step == self.total, stopped=stopped)
            self.on_event("step", {"step": self.step, "total": self.total, "lr": lr})
            if kill_at and self.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if stop:
                break
        return Outcome(self.step, self.total, self.best, self.last_metrics, stopped, final_loss)

    def _past(self, deadline: float) -> bool:
        """Whether any process has reached ``deadline`` (all processes agree, so they stop together)."""
        late = torch.tensor(float(time.monotonic() >= deadline))
        return bool(self.dist.all_reduce_sum(late) > 0)

    def _validation(self, patience: int, counted: bool = True) -> bool:
        metrics = self.validate()
        self.last_metrics = metrics
        if counted and self.task.on_validation is not None:
            self.task.on_validation(metrics)
        value = metrics.get(self.monitor, float("nan"))
        if self.monitor not in metrics:
            raise LungtkError(
                f"setting monitor={self.monitor!r}: task '{self.task.name}' reports {', '.join(sorted(metrics))}"
            )
        maximize = self.task.maximize if self.monitor == self.task.monitor else self.monitor != "loss"
        if counted:
            self.schedule.observe(value, maximize)
        best = None if self.best is None else float(self.best["value"])
        improved = math.isfinite(value) and (best is None or (value > best if maximize else value < best))
        if improved:
            self.best = {"step": self.step, "value": value, "monitor": self.monitor, "metrics": metrics}
            if counted:
                self.bad_validations = 0
            if self.dist.is_main:
                save_checkpoint(
                    self.checkpoints / "best.pt",
                    {
                        "kind": "best",
                        "task": self.task.name,
                        "step": self.step,
                        "metrics": metrics,
                        "model": self.model.state_dict(),
                    },
                )
        elif counted:
            self.bad_validations += 1
        self.log.write({"step": self.step, "val": metrics, "best": bool(improved)})
        self.on_event(
            "val", {"step": self.step, "metrics": metrics, "monitor": self.monitor, "improved": improved}
        )
        return counted and patience > 0 and self.bad_validations >= patience

    def save(self, done: bool, stopped: str) -> None:
        state = self._state(done, stopped)
        if self.dist.is_main:
            save_checkpoint(self.checkpoints / "last.pt", state)
            if done or time.monotonic() - self._plotted > PLOT_EVERY_S:
                plot_curves(self.log.path, self.run_dir / "curves.png", self.monitor)
                self._plotted = time.monotonic()
        self.dist.barrier()

    def selected_weights(self) -> tuple[str, int, dict[str, Any]]:
        """("best" or "last", its step, its state dict): the best validated network when there was a
        validation, else the last one."""
        if self.best is not None:
            best = load_checkpoint(self.checkpoints / "best.pt")
            return "best", int(best["step"]), best["model"]
        return "last", self.step, self.model.state_dict()
