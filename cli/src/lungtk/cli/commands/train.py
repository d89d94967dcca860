"""``lungtk train``: train a registered task on a data folder into a run folder; ``lungtk train list``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from lungtk.cli.console import (
    checked,
    clear_on_exit,
    description_column,
    note,
    plain_field_column,
    stderr,
    stdout,
)
from lungtk.cli.console import status as spinner
from lungtk.core import LungtkError, get_registry, validate

LAUNCHED_ENV = (
    "LUNGTK_TRAIN_LAUNCHED"  # set for the processes `--nproc` starts: the launcher prints the result
)


def list_tasks(as_json: bool) -> None:
    registry = get_registry()
    specs = [registry.get("task", name) for name in registry.names("task")]
    if as_json:
        rows = [
            {
                "name": s.name,
                "summary": s.summary,
                "distribution": s.distribution,
                "version": s.version,
                "settings": dict(s.settings),
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=2))
        return
    if not specs:
        stdout.print("no training task is installed (entry-point group `lungtk`, hook lungtk_register_tasks)")
        return
    from rich.table import Table

    table = Table(title="lungtk training tasks", title_justify="left")
    for column in ("task", "summary", "provider"):
        table.add_column(column, overflow="fold")
    for s in specs:
        table.add_row(s.name, s.summary, s.provider)
    stdout.print(table)


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


class _Display:
    """The progress bar on stderr: step, loss, validation metric, patches/s and ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.progress = Progress(
            description_column(),
            BarColumn(),
            MofNCompleteColumn(),
            plain_field_column("status"),
            TimeRemainingColumn(),
            console=stderr,
            transient=False,
        )
        self.prepare: Any = None
        self.train: Any = None
        self.loss = self.metric = self.rate = ""
        self.first_loss: float | None = None
        self.last_loss: float | None = None

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # failed: leave the error as the last line, not a half bar
            clear_on_exit(self.progress)
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def _status(self) -> str:
        return "  ".join(x for x in (self.loss, self.metric, self.rate) if x)

    def __call__(self, kind: str, info: Any) -> None:
        if kind == "prepare":
            if self.prepare is None:
                self.prepare = self.progress.add_task("reading scans", total=info["total"], status="")
            self.progress.update(self.prepare, completed=info["done"])
        elif kind == "start":
            self.train = self.progress.add_task(
                "training", total=info["total"], completed=info["step"], status=""
            )
        elif kind == "log":
            if self.first_loss is None:
                self.first_loss = info["loss"]
            self.last_loss = info["loss"]
            self.loss = f"loss {info['loss']:.4f}"
            if info.get("patches_per_s"):
                self.rate = f"{info['patches_per_s']:.1f} patches/s"
        elif kind == "val":
            value = info["metrics"].get(info["monitor"])
            self.metric = f"val {info['monitor']} {value:.4f}" if value is not None else ""
        elif kind == "isample":
            note(f"step {info['step']}: refreshing the error maps (isample)")
        elif kind == "step" and self.train is not None:
            self.progress.update(self.train, completed=info["step"], status=self._status())


def train(
    task: Annotated[str, typer.Argument(help="A registered task (see `lungtk train list`), or `list`.")],
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="A LUNA16, LNDb or MSD folder (or lungtk phantoms).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The run folder.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A TOML file of settings (e.g. a run's config.toml).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE: change one setting (repeat); --show-config lists them."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", help="Train this many epochs (1 or more).", callback=checked(validate.count)
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", help="Train this many optimizer steps (1 or more).", callback=checked(validate.count)
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (default: on for CUDA).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="The run's seed (0 to 2**32-1).", callback=checked(validate.seed)),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            help="Processes on this machine (one per GPU; gloo on the CPU), via torchrun.",
            callback=checked(validate.count, high=1024),
        ),
    ] = 1,
    layout: Annotated[
        str, typer.Option("--layout", help="Data-set layout: auto, luna16, lndb or msd.")
    ] = "auto",
    show_config: Annotated[
        bool, typer.Option("--show-config", help="Print the resolved configuration (TOML) and exit.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="`list`: print JSON.")] = False,
) -> None:
    """Train TASK on the scans in --data; write checkpoints, metrics and the model file to --out.

    RUN gets config.toml (the resolved settings), splits.json, metrics.jsonl, curves.png,
    checkpoints/last.pt (resume with --resume) and best.pt, and model.safetensors (the best validated
    network), whose path is printed on stdout. Settings: the task's defaults, then --config, then --set,
    then --epochs/--steps/--seed/--amp. On several GPUs or machines: --nproc N, or torchrun directly
    (see the README).
    """
    if task == "list":
        list_tasks(as_json)
        return
    try:
        _train(
            TrainArgs(
                task, data, out, config, set_ or [], epochs, steps, device, amp, seed, resume, nproc, layout
            ),
            show_config,
        )
    except LungtkError:
        if _rank() > 0:  # rank 0 reports it; one line is enough
            raise typer.Exit(1) from None
        raise


@dataclass(frozen=True)
class TrainArgs:
    """The command line of ``lungtk train TASK`` (what --nproc hands to every process again)."""

    task: str
    data: Path | None
    out: Path | None
    config: Path | None
    assignments: list[str]
    epochs: int | None
    steps: int | None
    device: str
    amp: bool | None
    seed: int | None
    resume: bool
    nproc: int
    layout: str

    def argv(self) -> list[str]:
        """These arguments as a ``lungtk`` command line, without --nproc (for the launched processes)."""
        argv = ["train", self.task, "--data", str(self.data), "--out", str(self.out)]
        argv += ["--device", self.device, "--layout", self.layout]
        argv += ["--config", str(self.config)] if self.config is not None else []
        for item in self.assignments:
            argv += ["--set", item]
        argv += ["--epochs", str(self.epochs)] if self.epochs is not None else []
        argv += ["--steps", str(self.steps)] if self.steps is not None else []
        argv += ["--seed", str(self.seed)] if self.seed is not None else []
        argv += [] if self.amp is None else ["--amp" if self.amp else "--no-amp"]
        return argv + (["--resume"] if self.resume else [])


def _train(args: TrainArgs, show_config: bool) -> None:
    from lungtk.train.config import parse_set, to_toml

    task, data, out, epochs, steps = args.task, args.data, args.out, args.epochs, args.steps
    seed, amp, nproc = args.seed, args.amp, args.nproc

    get_registry().get("task", task)  # an unknown task fails first, with a suggestion
    explicit: dict[str, Any] = {}
    if epochs is not None and steps is not None:
        raise LungtkError("give --epochs or --steps, not both")
    if epochs is not None:
        explicit.update(epochs=epochs, steps=0)
    if steps is not None:
        if steps < 1:
            raise LungtkError(f"--steps {steps}: use 1 or more")
        explicit["steps"] = steps
    if seed is not None:
        explicit["seed"] = seed
    if amp is not None:
        explicit["amp"] = "auto" if amp else "off"
    if (data is None or out is None) and not show_config:
        raise LungtkError(f"lungtk train {task} needs --data DIR and --out RUN")
    from lungtk.train.run import gather_settings, plan

    given = gather_settings(args.config, parse_set(args.assignments, task), explicit, task)
    if show_config:
        from lungtk.train.config import resolve_config
        from lungtk.train.task import find_task

        print(to_toml(resolve_config(find_task(task), given), {"task": task}), end="")
        return
    assert data is not None and out is not None
    from lungtk.train.distributed import torchrun_world

    if nproc < 1:
        raise LungtkError(f"--nproc {nproc}: use 1 or more")
    processes = torchrun_world() if torchrun_world() > 1 else nproc
    the_plan = plan(
        task,
        data,
        out,
        given,
        device=args.device,
        resume=args.resume,
        layout=args.layout,
        processes=processes,
    )
    if amp and not the_plan.device.startswith("cuda"):
        note("--amp: mixed precision runs on CUDA only; this CPU run is in float32")

    if nproc > 1 and torchrun_world() == 1:
        _launch(the_plan, args)
        return
    _run(the_plan)


def _run(the_plan: Any) -> None:
    from lungtk.train.run import train as run_training

    main = _rank() == 0
    start = time.perf_counter()
    display = _Display()
    if main:
        with display:
            result = run_training(the_plan, on_event=display)
    else:
        result = run_training(the_plan)
    if not main:
        return
    seconds = time.perf_counter() - start
    losses = (
        f"; loss {display.first_loss:.4f} -> {display.last_loss:.4f}"
        if display.first_loss is not None and display.last_loss is not None
        else ""
    )
    best = ""
    if result.best:
        best = f"; best validation {result.best['monitor']} {result.best['value']:.4f} at step {result.best['step']}"
    how = {"early": "stopped early", "time": "stopped at max_minutes"}.get(result.stopped, "trained")
    note(
        f"{how} {the_plan.spec.name} for {result.step} of {result.total} steps in {seconds:.1f}s{losses}{best}"
    )
    note(f"run folder: {result.run_dir} (metrics.jsonl, curves.png, checkpoints/)")
    if result.model is not None and not os.environ.get(LAUNCHED_ENV):
        stdout.print(str(result.model), highlight=False)


def _launch(the_plan: Any, args: TrainArgs) -> None:
    """Check the data here (errors once, the cache warmed for every process), then start torchrun."""
    from lungtk.train.distributed import launch
    from lungtk.train.run import MODEL_FILE, check_data, task_target

    nproc = args.nproc
    if the_plan.device.startswith("cuda"):
        import torch

        if nproc > torch.cuda.device_count():
            raise LungtkError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    with spinner("checking the data folder"):
        check_data(the_plan, task_target(the_plan))
    note(f"starting {nproc} processes (torchrun, {'nccl' if the_plan.device.startswith('cuda') else 'gloo'})")
    os.environ[LAUNCHED_ENV] = "1"
    try:
        status = launch(nproc, args.argv())
    finally:
        os.environ.pop(LAUNCHED_ENV, None)
    if status != 0:
        raise LungtkError(
            f"training failed in one of the {nproc} processes (exit status {status}); see above"
        )
    assert args.out is not None  # _train checked it
    stdout.print(str(args.out / MODEL_FILE), highlight=False)
