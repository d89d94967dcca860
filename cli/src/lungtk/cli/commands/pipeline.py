"""``lungtk pipeline run`` and ``lungtk demo``: scans in; findings, masks, a recommendation and a report out."""

from __future__ import annotations

import os
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

if TYPE_CHECKING:
    from rich.table import Table

    from lungtk.core import ComponentSpec, Registry
    from lungtk.pipeline import Pipeline, RunSummary

app = typer.Typer(
    help="Run detection, segmentation, classification and follow-up on CT scans.", no_args_is_help=True
)


MAX_BATCH = 65536  # candidates per call: more than any scan has, few enough to allocate


class Scheme(StrEnum):
    fleischner2017 = "fleischner2017"
    lndb = "lndb"


class Risk(StrEnum):
    low = "low"
    high = "high"


def _run(pipeline: Pipeline, scans: list[tuple[str, Path]], out: Path, resume: bool) -> RunSummary:
    from lungtk.pipeline import run
    from lungtk.pipeline.run import check_writable

    check_writable(out)  # before the progress bar: a bad --out is one line
    with progress_bar() as progress:
        task = progress.add_task("analysing scans", total=len(scans))

        def advance(uid: str, status: str, record: dict) -> None:
            if status == "failed":  # one line: the scan, the component and its distribution; verbatim
                line = Text.assemble(("failed", "yellow"), f" {_shown(uid)}: {record.get('error')}")
                stderr.print(line, highlight=False, soft_wrap=True)
                if record.get("traceback") and os.environ.get("LUNGTK_DEBUG", "") not in ("", "0"):
                    stderr.print(Text(str(record["traceback"]).rstrip()), highlight=False, soft_wrap=True)
            progress.advance(task)

        return run(pipeline, scans, out, resume=resume, on_scan=advance)


def _say(message: str) -> None:
    """A line for humans on stderr, printed as it is (paths and names may hold brackets)."""
    stderr.print(Text(message), highlight=False, soft_wrap=True)


def _print_timings(summary: RunSummary) -> None:
    from lungtk.pipeline.run import peak_rss_mb

    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items() if v and k != "total")
    _say(
        f"time per stage: {stages}; total {summary.timings['total']:.1f}s; peak memory {peak_rss_mb():.0f} MiB"
    )


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
    detector: Annotated[str, typer.Option("--detector", help="A registered detector.")] = "blob",
    candidates: Annotated[
        Path | None,
        typer.Option(
            "--candidates",
            help="Use these locations instead of a detector: a CSV with seriesuid,coordX,coordY,coordZ "
            "(patient mm) and optional diameter_mm (default 10) and probability (default 1).",
        ),
    ] = None,
    segmenter: Annotated[str, typer.Option("--segmenter", help="A registered segmenter.")] = "regiongrow",
    classifier: Annotated[
        list[str] | None, typer.Option("--classifier", help="A registered classifier; repeat for more.")
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
        float,
        typer.Option(
            "--threshold",
            help="Findings at this probability or more are reported (0 to 1).",
            callback=checked(validate.probability),
        ),
    ] = 0.5,
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
) -> None:
    """Detect, segment and classify nodules, then recommend follow-up, for every scan.

    Writes to OUT: findings.csv (LUNA16 submission columns plus diameter_mm, volume_mm3, texture,
    malignancy), findings.json (with components, versions, device and timings), masks/<uid>.nii.gz,
    fleischner.json and report.html. See `lungtk plugins list` for the components. A scan that cannot be
    read, or on which a component fails (raises, or returns what breaks its contract), is named on stderr
    with the component and its distribution, recorded in findings.json and the report, and skipped; the
    other scans go on, every output is written, and the run then exits with status 1. --resume reuses a
    scan's saved results only when its files (size, time, content) and the settings are unchanged.
    Prints OUT on stdout.
    """
    from lungtk.core.options import parse_assignments, parse_weights
    from lungtk.pipeline import GivenCandidates, Pipeline, expand_scans

    settings = parse_assignments(set_ or [])
    model_files = parse_weights(weights or [])
    found = expand_scans(scans)
    given = GivenCandidates.read(candidates) if candidates is not None else None
    if given is not None:
        others = given.check_covers(uid for uid, _ in found)
        if others:
            shown = ", ".join(_shown(u) for u in others[:3]) + (" ..." if len(others) > 3 else "")
            warning(f"{candidates}: locations on {len(others)} scan(s) not in this run are ignored: {shown}")
    pipeline = Pipeline.from_registry(
        get_registry(),
        given if given is not None else detector,
        segmenter,
        classifier if classifier is not None else ["size"],
        device=device,
        precision=precision.value,
        batch_size=batch_size,
        settings=settings,
        weights=model_files,
        threshold=threshold,
        scheme=fleischner.value,
        risk=risk.value,
    )
    on_cpu = [c.spec.name for c in pipeline.components if c.spec.cpu_only]
    if device.startswith("cuda") and on_cpu:
        _say(f"--device {device}: {', '.join(on_cpu)} use no GPU; they run on the CPU")
    summary = _run(pipeline, found, out, resume)
    _print_timings(summary)
    done = len(summary.scans) - len(summary.failed)
    _say(
        f"{done} scan(s) analysed{f' ({summary.resumed} reused)' if summary.resumed else ''}, "
        f"{len(summary.findings)} finding(s); report: {out / 'report.html'}"
    )
    stdout.print(str(out), highlight=False, markup=False, soft_wrap=True)
    _raise_if_failed(summary)


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
    """Make a synthetic chest CT, run the pipeline on it and show what it found.

    Uses the most accurate installed components as measured on unseen phantoms (README, "Learned
    segmentation"): today the classical blob / regiongrow / size, which the shipped small learned models
    do not yet beat. Takes well under a minute on two CPU cores.
    """
    from rich.table import Table

    from lungtk.phantom import write_phantoms
    from lungtk.pipeline import Pipeline, expand_scans

    registry = get_registry()
    detector = _best(registry, "detector", ("blob", "nodulenet"))  # learned by default: issue 17
    segmenter = _best(registry, "segmenter", ("regiongrow", "resunet"))
    classifier = _best(registry, "classifier", ("size",))
    with status("making a phantom chest CT"):
        write_phantoms(out / "phantom", n=1, seed=seed, n_nodules=3, overwrite=True)
    pipeline = Pipeline.from_registry(registry, detector, segmenter, [classifier])
    summary = _run(pipeline, expand_scans([out / "phantom" / "subset0"]), out / "results", False)
    _print_timings(summary)
    _raise_if_failed(summary)

    record = summary.scans[0]
    table = Table(
        title=f"findings at probability >= {pipeline.threshold:g} ({detector} -> {segmenter} -> {classifier})"
    )
    for column in ("#", "x mm", "y mm", "z mm", "probability", "diameter mm", "texture", "malignancy"):
        table.add_column(column, justify="left" if column == "texture" else "right")
    for r in record["findings"]:
        if is_reported(r[LUNA16_PROBABILITY], pipeline.threshold):
            table.add_row(
                str(r["finding"]),
                *(f"{r[k]:.1f}" for k in LUNA16_XYZ),
                f"{r[LUNA16_PROBABILITY]:.2f}",
                f"{r[LUNA16_DIAMETER]:.1f}",
                r[TEXTURE],
                f"{r[MALIGNANCY]:.2f}" if r[MALIGNANCY] is not None else "-",
            )
    stdout.print(table)
    stdout.print(_truth_table(out / "phantom" / "nodules.csv", record["findings"], pipeline.threshold))
    rec = record["recommendation"]
    stdout.print(
        Text.assemble((f"Fleischner 2017, category {rec['category']}", "bold"), f": {rec['recommendation']}"),
        markup=False,
    )
    stdout.print(f"Report: {(out / 'results' / 'report.html').resolve()}", markup=False, soft_wrap=True)


def _truth_table(nodules_csv: Path, findings: list[dict], threshold: float) -> Table:
    """The phantom's nodules and whether a reported finding hits each one."""
    from rich.table import Table

    from lungtk.pipeline.truth import match_truth

    table = Table(title=f"the phantom's nodules (truth from {nodules_csv})")
    for column in ("x mm", "y mm", "z mm", "diameter mm", "texture", "found"):
        table.add_column(column, justify="left" if column in ("texture", "found") else "right")
    for match in match_truth(nodules_csv, findings, threshold):
        table.add_row(
            *(f"{v:.1f}" for v in match.center_xyz),
            f"{match.diameter_mm:.1f}",
            match.texture,
            f"yes (#{match.finding})" if match.found else "no",
        )
    return table


def _best(registry: Registry, kind: str, preferred: tuple[str, ...]) -> str:
    """The first of ``preferred`` that runs without a model file from the user (a classical component,
    or one whose shipped weights are installed): the demo has no --weights to ask for one."""
    available = registry.names(kind)  # type: ignore[arg-type]
    ready = [name for name in available if _runs_as_shipped(registry.get(kind, name))]  # type: ignore[arg-type]
    for name in preferred:
        if name in ready:
            return name
    if ready:
        return ready[0]
    raise LungtkError(
        f"no {kind} that runs without a model file is installed (wanted one of {', '.join(preferred)}); "
        "reinstall lungtk"
    )


def _runs_as_shipped(spec: ComponentSpec) -> bool:
    if spec.default_weights is not None:
        path = spec.weights_path()
        return path is not None and path.is_file()
    return spec.cpu_only  # the classical components take no weights
