"""``lungtk pipeline run`` and ``lungtk demo``: scans in; findings, masks, a recommendation and a report out."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from lungtk.cli.console import checked, progress_bar, status, stderr, stdout, warning
from lungtk.core import LungtkError, get_registry, validate
from lungtk.core.labels import (
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_PROBABILITY,
    LUNA16_XYZ,
    MALIGNANCY,
    TEXTURE,
    is_reported,
)
from lungtk.core.presets import DEFAULT_PRESET, DEFAULT_THRESHOLD, PRESETS, get_preset
from lungtk.core.threads import MAX_PROCESSES

if TYPE_CHECKING:
    from rich.table import Table

    from lungtk.pipeline import Pipeline, Ranks, RunSummary

app = typer.Typer(
    help="Run detection, segmentation, classification and follow-up on CT scans.", no_args_is_help=True
)


MAX_BATCH = 65536  # candidates per call: more than any scan has, few enough to allocate


PresetChoice = StrEnum("PresetChoice", {name: name for name in PRESETS})
DEFAULT_CHOICE = PresetChoice(DEFAULT_PRESET)


class Scheme(StrEnum):
    fleischner2017 = "fleischner2017"
    lndb = "lndb"


class Risk(StrEnum):
    low = "low"
    high = "high"


def _threshold_help() -> str:
    """--threshold's help, naming the presets whose report threshold differs from the default."""
    own = ", ".join(f"{p.name} {p.threshold:g}" for p in PRESETS.values() if p.threshold != DEFAULT_THRESHOLD)
    return (
        f"Findings at this probability or more are reported (0 to 1); default: {DEFAULT_THRESHOLD:g}"
        + (f", or a preset's own for its own detector ({own})" if own else "")
        + ". nodulenet without its flip TTA (--set nodulenet.tta=false) scores high: use 0.7 there."
    )


@contextmanager
def _scans_bar(label: str, total: int) -> Iterator[Callable[[str, str, dict], None]]:
    """A progress bar over ``total`` scans; yields the ``on_scan`` callback that advances it and names
    each failed scan on its own line."""
    with progress_bar() as progress:
        task = progress.add_task(label, total=total)

        def advance(uid: str, status: str, record: dict) -> None:
            _failed_line(uid, status, record)
            progress.advance(task)

        yield advance


def _run(
    pipeline: Pipeline,
    scans: list[tuple[str, Path]],
    out: Path,
    resume: bool,
    nproc: int = 1,
    truth: Path | None = None,
) -> RunSummary:
    from lungtk.pipeline import run, run_processes
    from lungtk.pipeline.run import check_writable

    check_writable(out)  # before the progress bar: a bad --out is one line
    with _scans_bar("analysing scans", len(scans)) as advance:
        if nproc > 1:  # one bar for every process's scans
            return run_processes(pipeline, scans, out, nproc, resume=resume, on_scan=advance, truth=truth)
        return run(pipeline, scans, out, resume=resume, on_scan=advance, truth=truth)


def _run_rank(
    pipeline: Pipeline,
    scans: list[tuple[str, Path]],
    out: Path,
    resume: bool,
    ranks: Ranks,
    truth: Path | None = None,
) -> RunSummary | None:
    """This torchrun rank's share; rank 0 shows its progress and returns the merged summary."""
    from lungtk.pipeline import run_ranks, shard_of
    from lungtk.pipeline.run import check_writable

    check_writable(out)
    if ranks.rank > 0:
        return run_ranks(pipeline, scans, out, ranks, resume=resume, on_scan=_failed_line, truth=truth)
    label = f"analysing scans (rank 0 of {ranks.world})"
    with _scans_bar(label, len(shard_of(scans, 0, ranks.world))) as advance:
        return run_ranks(pipeline, scans, out, ranks, resume=resume, on_scan=advance, truth=truth)


def _failed_line(uid: str, status: str, record: dict) -> None:
    if status == "failed":  # one line: the scan, the component and its distribution; verbatim
        line = Text.assemble(("failed", "yellow"), f" {_shown(uid)}: {record.get('error')}")
        stderr.print(line, highlight=False, soft_wrap=True)
        if record.get("traceback") and os.environ.get("LUNGTK_DEBUG", "") not in ("", "0"):
            stderr.print(Text(str(record["traceback"]).rstrip()), highlight=False, soft_wrap=True)


def _say(message: str) -> None:
    """A line for humans on stderr, printed as it is (paths and names may hold brackets)."""
    stderr.print(Text(message), highlight=False, soft_wrap=True)


def _print_timings(summary: RunSummary) -> None:
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items() if v and k != "total")
    peak = summary.peak_rss_mb  # with several processes: the largest
    _say(f"time per stage: {stages}; total {summary.timings['total']:.1f}s; peak memory {peak:.0f} MiB")


class PrecisionChoice(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@app.command("run")
def run_command(
    scans: Annotated[
        list[str],
        typer.Argument(
            help="Scan files (.mhd/.nii.gz/.nrrd), folders of scans, DICOM folders or list files."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for findings, masks and the report.")],
    preset: Annotated[
        PresetChoice,
        typer.Option(
            "--preset",
            help="A whole composition: "
            + "; ".join(f"{p.name}: {p.composition()}" for p in PRESETS.values())
            + ". --detector, --segmenter and --classifier replace its parts.",
        ),
    ] = DEFAULT_CHOICE,
    detector: Annotated[
        str | None, typer.Option("--detector", help="A registered detector (default: the preset's).")
    ] = None,
    candidates: Annotated[
        Path | None,
        typer.Option(
            "--candidates",
            help="Use these locations instead of a detector: a CSV with seriesuid,coordX,coordY,coordZ "
            "(patient mm) and optional diameter_mm (default 10) and probability (default 1). A nodule "
            "classifier's probability is averaged with the table's, or used alone when the table gives "
            "no probability.",
        ),
    ] = None,
    segmenter: Annotated[
        str | None, typer.Option("--segmenter", help="A registered segmenter (default: the preset's).")
    ] = None,
    classifier: Annotated[
        list[str] | None,
        typer.Option(
            "--classifier", help="A registered classifier; repeat for more (default: the preset's)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A component setting NAME.KEY=VALUE (NAME: the component or its role, e.g. "
            "blob.max_candidates=50); repeat for more. `lungtk plugins list --json` shows the settings.",
        ),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(
            "--weights",
            help="A model file for one component, NAME=FILE (NAME: the component or its role, e.g. "
            "segmenter=run/model.safetensors); default: the component's shipped weights.",
        ),
    ] = None,
    fleischner: Annotated[
        Scheme, typer.Option("--fleischner", help="Follow-up scheme.")
    ] = Scheme.fleischner2017,
    risk: Annotated[Risk, typer.Option("--risk", help="Patient risk for the 2017 guideline.")] = Risk.high,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help=_threshold_help(),
            callback=checked(validate.probability),
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[
        PrecisionChoice, typer.Option("--precision", help="Arithmetic of learned components on a GPU.")
    ] = PrecisionChoice.fp32,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Candidates per segmenter call (1 to 65536).",
            callback=checked(validate.count, high=MAX_BATCH),
        ),
    ] = 16,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse scans already done in --out.")] = False,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Known nodules (a CSV with seriesuid,coordX,coordY,coordZ,diameter_mm, e.g. a data set's "
            "annotations.csv): the report marks each as found or missed and counts the findings that hit "
            "none. Default: the annotations.csv of a data-set folder given as SCANS, if it has one.",
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            help=f"Processes on this machine (1 to {MAX_PROCESSES}), each analysing its share of the scans (each on its "
            "own GPU with --device cuda); one findings.csv, findings.json and report. Under torchrun "
            "(`torchrun --nproc-per-node N -m lungtk.cli.main pipeline run ...`) each rank takes its share "
            "instead and rank 0 merges; on several machines --out must be the same shared folder on all.",
            callback=checked(validate.count, high=MAX_PROCESSES),
        ),
    ] = 1,
) -> None:
    """Detect, segment and classify nodules, then recommend follow-up, for every scan.

    Writes to OUT: findings.csv (LUNA16 submission columns plus diameter_mm, volume_mm3, texture,
    malignancy), findings.json (with components, versions, device and timings), masks/<uid>.nii.gz,
    fleischner.json and report.html; for a DICOM series also dicom/<uid>/seg.dcm and sr.dcm (a DICOM SEG
    of the masks and a TID 1500 SR of the findings, referencing the series). See `lungtk plugins list`
    for the components. A scan that cannot be read, or on which a component fails (raises, or returns
    what breaks its contract), is named on stderr with the component and its distribution, recorded in
    findings.json and the report, and skipped; the other scans go on, every output is written, and the
    run then exits with status 1. --resume reuses a scan's saved results only when its files (size,
    time, content) and the settings are unchanged. Without --preset it runs the learned preset, with
    the shipped weights; --preset classical needs no learned model. Prints OUT on stdout.
    """
    from lungtk.core.options import parse_assignments, parse_weights
    from lungtk.pipeline import GivenCandidates, Pipeline, Ranks, expand_scans

    ranks = Ranks.from_env()  # started by torchrun: RANK of WORLD_SIZE
    if ranks.world > 1 and nproc > 1:
        raise LungtkError(
            f"--nproc {nproc}: under torchrun (WORLD_SIZE={ranks.world}) each rank is one process already; "
            "leave out --nproc, or run without torchrun"
        )
    settings = parse_assignments(set_ or [])
    model_files = parse_weights(weights or [])
    found = expand_scans(scans)
    truth = _truth(annotations, scans)
    given = GivenCandidates.read(candidates) if candidates is not None else None
    if given is not None:
        others = given.check_covers(uid for uid, _ in found)
        if others:
            shown = ", ".join(_shown(u) for u in others[:3]) + (" ..." if len(others) > 3 else "")
            warning(f"{candidates}: locations on {len(others)} scan(s) not in this run are ignored: {shown}")
    chosen = get_preset(preset.value)
    pipeline = Pipeline.from_registry(
        get_registry(),
        given if given is not None else (detector or chosen.detector),
        segmenter or chosen.segmenter,
        classifier if classifier is not None else list(chosen.classifiers),
        device=device,
        precision=precision.value,
        batch_size=batch_size,
        settings=settings,
        weights=model_files,
        threshold=threshold
        if threshold is not None
        else chosen.report_threshold(detector, given_candidates=given is not None),
        scheme=fleischner.value,
        risk=risk.value,
        local_rank=ranks.local_rank if ranks.world > 1 else None,  # cuda: each rank on its own GPU
    )
    on_cpu = [c.spec.name for c in pipeline.components if c.spec.cpu_only]
    if device.startswith("cuda") and on_cpu:
        _say(f"--device {device}: {', '.join(on_cpu)} use no GPU; they run on the CPU")
    if ranks.world > 1:
        summary = _run_rank(pipeline, found, out, resume, ranks, truth)
        if summary is None:
            return  # rank 0 reports the run
    else:
        summary = _run(pipeline, found, out, resume, nproc, truth)
    _print_timings(summary)
    done = len(summary.scans) - len(summary.failed)
    _say(
        f"{done} scan(s) analysed{f' ({summary.resumed} reused)' if summary.resumed else ''}, "
        f"{len(summary.findings)} finding(s); report: {out / 'report.html'}"
    )
    stdout.print(str(out), highlight=False, markup=False, soft_wrap=True)
    _raise_if_failed(summary)


def _truth(annotations: Path | None, arguments: list[str]) -> Path | None:
    """The annotations to mark found / missed in the report: ``--annotations`` (a bad table is one line,
    before anything is built), else the data-set folder's own annotations.csv, which is left out with a
    warning when it cannot be matched to the scans (it was not asked for: the run goes on without it)."""
    from lungtk.pipeline.truth import read_truth

    truth = annotations if annotations is not None else _annotations_of(arguments)
    if truth is None:
        return None
    if annotations is not None:
        read_truth(truth, per_scan=True)
        return truth
    try:
        read_truth(truth, per_scan=True)
    except LungtkError as exc:
        warning(f"{exc}; the report has no found / missed table (--annotations to give a table)")
        return None
    _say(f"annotations: {truth} (found / missed in the report; --annotations to choose another)")
    return truth


def _annotations_of(arguments: list[str]) -> Path | None:
    """The annotations.csv of the one data-set folder given (itself, or the parent of its subset folder)."""
    if len(arguments) != 1 or not Path(arguments[0]).is_dir():
        return None
    folder = Path(arguments[0])
    for candidate in (folder / "annotations.csv", folder.parent / "annotations.csv"):
        if candidate.is_file():
            return candidate
    return None


def _shown(uid: str) -> str:
    """A series UID as one line: quoted when it holds a line break or another unprintable character."""
    return uid if uid.isprintable() else repr(uid)


def _raise_if_failed(summary: RunSummary) -> None:
    """Exit status 1 (after every output is written) when any scan failed, naming the first few."""
    if summary.failed:
        uids = [_shown(s[LUNA16_ID]) for s in summary.failed]
        names = ", ".join(uids[:5]) + (f" and {len(uids) - 5} more" if len(uids) > 5 else "")
        others = "; the others' results are written" if len(uids) < len(summary.scans) else ""
        raise LungtkError(
            f"{len(uids)} of {len(summary.scans)} scan(s) failed: {names}{others} "
            f"(why: the lines above and {summary.out / 'findings.json'})"
        )


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the phantom and the results.")] = Path(
        "lungtk-demo"
    ),
    seed: Annotated[
        int, typer.Option("--seed", help="Phantom seed (0 to 2**32-1).", callback=checked(validate.seed))
    ] = 2026,
) -> None:
    """Make a synthetic chest CT, run the learned and the classical presets on it and show what each found.

    Both presets (their components: `lungtk pipeline run --help`, --preset) analyse the same phantom and
    write to OUT/learned and OUT/classical. Printed: the learned pipeline's reported findings, the
    phantom's nodules with the finding of each pipeline that hit it, and each pipeline's recommendation.
    Takes well under a minute on two CPU cores.
    """
    from lungtk.phantom import write_phantoms
    from lungtk.pipeline import Pipeline, expand_scans

    registry = get_registry()
    with status("making a phantom chest CT"):
        write_phantoms(out / "phantom", n=1, seed=seed, n_nodules=3, overwrite=True)
    scans = expand_scans([out / "phantom" / "subset0"])
    results = {}
    for name in ("learned", "classical"):
        preset = get_preset(name)
        pipeline = Pipeline.from_registry(
            registry,
            preset.detector,
            preset.segmenter,
            list(preset.classifiers),
            threshold=preset.report_threshold(),
        )
        _say(f"{name}: {preset.composition()}")
        summary = _run(pipeline, scans, out / name, False, truth=out / "phantom" / "annotations.csv")
        _print_timings(summary)
        _raise_if_failed(summary)
        results[name] = (pipeline, summary)

    pipeline, summary = results["learned"]
    stdout.print(_findings_table(summary.scans[0]["findings"], pipeline.threshold, "learned"))
    truth = out / "phantom" / "nodules.csv"
    stdout.print(
        _truth_table(truth, {k: (s.scans[0]["findings"], p.threshold) for k, (p, s) in results.items()})
    )
    for name, (pipeline, summary) in results.items():
        record = summary.scans[0]
        rec = record["recommendation"]
        reported = sum(is_reported(r[LUNA16_PROBABILITY], pipeline.threshold) for r in record["findings"])
        stdout.print(
            Text.assemble(
                (f"{name}", "bold"),
                f" ({summary.timings['total']:.1f}s, {reported} finding(s) reported): "
                f"Fleischner 2017 category {rec['category']}, {rec['recommendation']}",
            ),
            markup=False,
        )
    for name in results:
        stdout.print(
            f"Report ({name}): {(out / name / 'report.html').resolve()}", markup=False, soft_wrap=True
        )


def _findings_table(findings: list[dict], threshold: float, name: str) -> Table:
    from rich.table import Table

    table = Table(title=f"{name} findings at probability >= {threshold:g}")
    for column in ("#", "x mm", "y mm", "z mm", "probability", "diameter mm", "texture", "malignancy"):
        table.add_column(column, justify="left" if column == "texture" else "right")
    for r in findings:
        if is_reported(r[LUNA16_PROBABILITY], threshold):
            table.add_row(
                str(r["finding"]),
                *(f"{r[k]:.1f}" for k in LUNA16_XYZ),
                f"{r[LUNA16_PROBABILITY]:.2f}",
                f"{r[LUNA16_DIAMETER]:.1f}",
                r[TEXTURE],
                f"{r[MALIGNANCY]:.2f}" if r[MALIGNANCY] is not None else "-",
            )
    return table


def _truth_table(nodules_csv: Path, runs: dict[str, tuple[list[dict], float]]) -> Table:
    """The phantom's nodules and, for each run, the reported finding that hits each one."""
    from rich.table import Table

    from lungtk.pipeline.truth import match_truth

    table = Table(title=f"the phantom's nodules (truth from {nodules_csv})")
    for column in ("x mm", "y mm", "z mm", "diameter mm", "texture", *(f"found: {k}" for k in runs)):
        table.add_column(column, justify="right" if column.endswith("mm") else "left")
    matches = {k: match_truth(nodules_csv, findings, threshold) for k, (findings, threshold) in runs.items()}
    for i, match in enumerate(next(iter(matches.values()))):
        found = [m[i] for m in matches.values()]
        table.add_row(
            *(f"{v:.1f}" for v in match.center_xyz),
            f"{match.diameter_mm:.1f}",
            match.texture,
            *(f"yes (#{m.finding})" if m.found else "no" for m in found),
        )
    return table
