"""One run over many scans in several processes: each takes a share of the scans, one merges the outputs.

Every process runs :func:`~lungtk.pipeline.run.analyse_scans` on its share (:func:`shard_of`: the scans
sorted by series UID, dealt out in turn), writing each scan's own files into OUT (``scans/<uid>.json``,
``masks/``, ``thumbnails/``); then one process writes findings.csv, findings.json, fleischner.json and
report.html from every scan's record, in the order the scans were given (:func:`merge`): the same
outputs as one process gives. Two ways to start the processes:

- :func:`run_processes` (``lungtk pipeline run --nproc N``): this process starts N processes on this
  machine, each building its own pipeline from ``pipeline.recipe`` (on its own GPU with ``cuda``), shows
  their progress through ``on_scan`` and merges.
- :func:`run_ranks` (``torchrun ... lungtk pipeline run``): every rank runs the same command, takes its
  share, and sends its records to rank 0 (``torch.distributed`` with gloo: no GPU needed), which merges.
  On several machines OUT must be the same folder on all of them (a shared file system).

With ``resume`` a scan whose saved record is complete and still valid is reused, so a run whose process
was killed is finished by running it again (with any number of processes) with ``resume``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from lungtk.core import LungtkError, validate
from lungtk.core.labels import LUNA16_ID
from lungtk.core.threads import MAX_PROCESSES, available_cores
from lungtk.pipeline.contract import one_line
from lungtk.pipeline.engine import Pipeline
from lungtk.pipeline.recipe import Recipe
from lungtk.pipeline.run import (
    RunSummary,
    _settings,
    analyse_scans,
    check_run,
    finish,
    run,
)

Scans = Sequence[tuple[str, Path]]
OnScan = Callable[[str, str, dict[str, Any]], None]

# How long rank 0 waits for the slowest rank to finish its share (ranks that stop are noticed at once).
RANK_TIMEOUT = timedelta(hours=24)
POLL_S = 0.2  # how often the parent of --nproc processes looks for one that stopped
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def shard_of(scans: Scans, rank: int, world: int) -> list[tuple[str, Path]]:
    """The scans of process ``rank`` of ``world``: sorted by series UID and dealt out in turn, so every
    scan goes to exactly one process, the shares differ by at most one scan, and every process computes
    the same split from the same scans whatever their order. Each share keeps the order of ``scans``."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of {world}: need 0 <= rank < world")
    mine = {uid for uid, _ in sorted(scans, key=lambda scan: scan[0])[rank::world]}
    return [(uid, path) for uid, path in scans if uid in mine]


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes of one run (torchrun's RANK, WORLD_SIZE and
    LOCAL_RANK); one process alone is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ranks:
        env = os.environ if environ is None else environ
        if not env.get("WORLD_SIZE", "").strip():
            return cls()
        world = _env_number(env, "WORLD_SIZE", 1)
        if world == 1:
            return cls()
        rank = _env_number(env, "RANK", 0)
        if rank >= world:
            raise LungtkError(
                f"RANK={rank} with WORLD_SIZE={world}: a rank is 0 to WORLD_SIZE-1; start with torchrun"
            )
        local = _env_number(env, "LOCAL_RANK", 0) if env.get("LOCAL_RANK", "").strip() else 0
        _check_rendezvous(env, world)
        return cls(rank, world, local)


def _check_rendezvous(env: Mapping[str, str], world: int) -> None:
    """Ranks find each other at MASTER_ADDR:MASTER_PORT, which torchrun sets with WORLD_SIZE."""
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name, "").strip()]
    if missing:
        raise LungtkError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set: start the ranks with torchrun "
            "(it sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT), or unset WORLD_SIZE"
        )


def _env_number(env: Mapping[str, str], name: str, low: int) -> int:
    text = env.get(name, "").strip()
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise LungtkError(
            f"{name}={text!r}: not a whole number of {low} or more; torchrun sets it (WORLD_SIZE, RANK and "
            "LOCAL_RANK), or unset WORLD_SIZE to run one process"
        )
    return value


def merge(
    pipeline: Pipeline,
    scans: Scans,
    out: Path,
    parts: Sequence[RunSummary],
    *,
    started: float,
    truth: Path | None = None,
) -> RunSummary:
    """Write the merged outputs of ``scans`` from the processes' summaries (``parts``, from
    :func:`~lungtk.pipeline.run.analyse_scans` on each share), in the order of ``scans``: exactly what
    one process writes. Every scan must be in exactly one part, and every part must have used the
    components and settings of ``pipeline``; ``started`` is ``time.perf_counter()`` at the run's start."""
    settings = _settings(pipeline)
    wanted = {uid for uid, _ in scans}
    by_uid: dict[str, dict[str, Any]] = {}
    same = "; give every process the same scans and options"
    for rank, part in enumerate(parts):
        if part.settings != settings:
            raise LungtkError(
                f"process {rank} analysed its scans with other components or settings than this one{same}"
            )
        for record in part.scans:
            uid = record.get(LUNA16_ID)
            if uid not in wanted:
                raise LungtkError(
                    f"process {rank} analysed scan {uid!r}, which is not one of this run's{same}"
                )
            if uid in by_uid:
                raise LungtkError(f"scan {uid!r} was analysed by two processes{same}")
            by_uid[uid] = record
    missing = [uid for uid, _ in scans if uid not in by_uid]
    if missing:
        raise LungtkError(f"{len(missing)} scan(s) were analysed by no process (e.g. {missing[0]!r}){same}")
    timings: dict[str, float] = {}
    for part in parts:
        for stage, seconds in part.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
    summary = RunSummary(
        out,
        scans=[by_uid[uid] for uid, _ in scans],
        timings=timings,
        resumed=sum(part.resumed for part in parts),
        settings=settings,
        device=", ".join(dict.fromkeys(part.device for part in parts)) or pipeline.device,
        peak_rss_mb=max((part.peak_rss_mb for part in parts), default=0.0),
        truth=truth,
    )
    return finish(summary, started)


# ---- several processes started here (--nproc) ----


def run_processes(
    pipeline: Pipeline,
    scans: Scans,
    out: Path,
    nproc: int,
    *,
    resume: bool = False,
    on_scan: OnScan | None = None,
    truth: Path | None = None,
) -> RunSummary:
    """:func:`~lungtk.pipeline.run.run` in ``nproc`` processes on this machine (at most one per scan).

    Each process builds the pipeline again from ``pipeline.recipe`` and the installed plugins (so
    ``pipeline`` must come from ``Pipeline.from_registry`` with installed components, or a given table
    of locations), on its own GPU when the device is CUDA, with the CPU cores shared among them; it
    takes its :func:`shard_of` the scans. ``on_scan`` is called here for every scan of every process;
    then this process merges the outputs. A process that stops (killed, out of memory) leaves the scans
    it finished in ``scans/``: the run then fails, and running it again with ``resume`` does the rest.
    The processes are spawned and import the main module, so a script calls this under
    ``if __name__ == "__main__":``."""
    nproc = validate.count(nproc, "nproc", high=MAX_PROCESSES)
    check_run(scans, out, truth)
    workers = min(nproc, len(scans))
    if workers <= 1:
        return run(pipeline, scans, out, resume=resume, on_scan=on_scan, truth=truth)
    recipe = _portable(pipeline)
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch or threads
    events = context.Queue()
    threads = max(1, available_cores() // workers)
    processes = [
        context.Process(
            target=_worker,
            args=(recipe, shard_of(scans, rank, workers), out, rank, resume, threads, events),
            name=f"lungtk-pipeline-{rank}",
        )
        for rank in range(workers)
    ]
    try:
        with _thread_limits(threads):
            for process in processes:
                process.start()
        parts, failure = _collect(processes, events, on_scan, out)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            if process.pid is not None:
                process.join()
        events.close()
    if failure is not None:
        raise failure
    return merge(pipeline, scans, out, [parts[rank] for rank in range(workers)], started=started, truth=truth)


def _portable(pipeline: Pipeline) -> Recipe:
    """The recipe another process builds ``pipeline`` from; one line when it cannot."""
    from lungtk.core import get_registry

    recipe = pipeline.recipe
    if recipe is None:
        raise LungtkError(
            "the pipeline was not built by Pipeline.from_registry, so other processes cannot build it; "
            "run it in one process"
        )
    registry = get_registry()
    for component in pipeline.components:
        if component.supplied:
            continue
        spec = component.spec
        try:
            installed = registry.get(spec.kind, spec.name)
        except LungtkError:
            installed = None
        if installed is None or (installed.distribution, installed.version) != (
            spec.distribution,
            spec.version,
        ):
            raise LungtkError(
                f"{component.label} is not an installed plugin, and the other processes build the pipeline "
                "from the installed plugins; register it through an entry point, or run one process"
            )
    try:
        pickle.dumps(recipe)
    except Exception as exc:
        raise LungtkError(
            f"the pipeline cannot be sent to other processes ({one_line(exc)}); run it in one process"
        ) from None
    return recipe


@contextmanager
def _thread_limits(threads: int) -> Iterator[None]:
    """While processes start: their numeric libraries use ``threads`` threads each, unless the user set
    the variables (a started process takes a copy of the environment)."""
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _worker(
    recipe: Recipe, scans: Scans, out: Path, rank: int, resume: bool, threads: int, events: Any
) -> None:
    """One of :func:`run_processes`' processes: build the pipeline, analyse the share, send the summary."""
    try:
        pipeline = recipe.build(local_rank=rank)
        torch = sys.modules.get("torch")  # imported by a learned component: its thread pool is ours
        if torch is not None:
            torch.set_num_threads(threads)

        def report(uid: str, status: str, record: dict[str, Any]) -> None:
            events.put(("scan", rank, (uid, status, record)))

        events.put(("done", rank, analyse_scans(pipeline, scans, out, resume=resume, on_scan=report)))
    except LungtkError as exc:
        events.put(("error", rank, _sendable(exc)))
    except BaseException as exc:  # a bug: the parent fails with this process's traceback
        trace = "".join(traceback.format_exception(exc))
        events.put(("error", rank, RuntimeError(f"process {rank} failed: {one_line(exc)}\n{trace}")))


def _sendable(exc: LungtkError) -> LungtkError:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return LungtkError(str(exc))
    return exc


def _collect(
    processes: Sequence[Any], events: Any, on_scan: OnScan | None, out: Path
) -> tuple[dict[int, RunSummary], BaseException | None]:
    """Every process's summary, calling ``on_scan`` as scans finish; the first failure, if any (the
    other processes go on: what they finish is kept for ``--resume``)."""
    parts: dict[int, RunSummary] = {}
    failure: BaseException | None = None
    pending = set(range(len(processes)))
    quiet = dict.fromkeys(pending, 0)  # polls with nothing received since the process exited
    while pending:
        try:
            kind, rank, payload = events.get(timeout=POLL_S)
        except queue.Empty:
            for rank in sorted(pending):
                code = processes[rank].exitcode
                if code is None:
                    continue
                quiet[rank] += 1
                if quiet[rank] > 2:  # it exited and sent nothing more: it stopped before finishing
                    pending.discard(rank)
                    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                    failure = failure or LungtkError(
                        f"process {rank} of {len(processes)} {how} before it finished its share of the "
                        f"scans; the scans done are kept in {out / 'scans'}",
                        option="--resume",
                        advice="run again with --resume to do the rest",
                        otherwise="run again",
                    )
            continue
        if kind == "scan":
            if on_scan is not None:
                on_scan(*payload)
        elif kind == "done":
            parts[rank] = payload
            pending.discard(rank)
        else:
            failure = failure or payload
            pending.discard(rank)
    return parts, failure


# ---- ranks started by torchrun ----


def run_ranks(
    pipeline: Pipeline,
    scans: Scans,
    out: Path,
    ranks: Ranks,
    *,
    resume: bool = False,
    on_scan: OnScan | None = None,
    truth: Path | None = None,
) -> RunSummary | None:
    """This rank's share of :func:`~lungtk.pipeline.run.run`, in a run of ``ranks.world`` processes
    started by torchrun (every rank calls this with the same scans and pipeline options). Rank 0 receives
    every rank's records, merges the outputs and returns the merged summary; the other ranks return None
    once rank 0 has their records. ``on_scan`` is called for this rank's scans. OUT must be the same
    folder for every rank (on several machines, a shared file system). Needs torch (gloo: no GPU)."""
    check_run(scans, out, truth)
    started = time.perf_counter()
    dist, own = _process_group(ranks)
    try:
        part = analyse_scans(
            pipeline, shard_of(scans, ranks.rank, ranks.world), out, resume=resume, on_scan=on_scan
        )
        parts: list[Any] | None = [None] * ranks.world if ranks.rank == 0 else None
        try:
            dist.gather_object(part, parts, dst=0)
        except RuntimeError as exc:
            raise LungtkError(
                f"rank {ranks.rank}: another rank stopped before it finished its share of the scans "
                f"({one_line(exc)}); the scans done are kept in {out / 'scans'}",
                option="--resume",
                advice="run again with --resume to do the rest",
                otherwise="run again",
            ) from exc
    finally:
        if own:
            dist.destroy_process_group()
    if parts is None:
        return None
    return merge(pipeline, scans, out, parts, started=started, truth=truth)


def _process_group(ranks: Ranks) -> tuple[Any, bool]:
    """torch.distributed, joined with gloo unless the caller has joined a group already (then it stays)."""
    try:
        import torch.distributed as dist
    except ImportError:
        raise LungtkError(
            f"WORLD_SIZE={ranks.world}: several ranks exchange their results through torch.distributed; "
            "install torch, or unset WORLD_SIZE to run one process"
        ) from None
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (ranks.rank, ranks.world):
            raise LungtkError(
                f"the process group is rank {dist.get_rank()} of {dist.get_world_size()}, not "
                f"{ranks.rank} of {ranks.world}"
            )
        return dist, False
    _check_rendezvous(os.environ, ranks.world)
    try:
        dist.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world, timeout=RANK_TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise LungtkError(
            f"rank {ranks.rank} of {ranks.world} cannot reach the other ranks at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: {one_line(exc)}"
        ) from exc
    return dist, True
