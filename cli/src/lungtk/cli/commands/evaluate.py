"""``lungtk eval``: evaluate results against a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import checked, note, progress_bar, stdout
from lungtk.core import LungtkError, validate

MAX_BOOTSTRAP = 100_000  # resamples: far more than a stable 95% interval needs
PLOT_SUFFIXES = (".png", ".pdf", ".svg")

app = typer.Typer(help="Evaluate results against reference annotations.", no_args_is_help=True)


@app.command("froc")
def froc(
    findings: Annotated[
        Path,
        typer.Option(
            "--findings", help="Marks: seriesuid,coordX,coordY,coordZ,probability (LUNA16 columns)."
        ),
    ],
    annotations: Annotated[
        Path, typer.Option("--annotations", help="Nodules: seriesuid,coordX,coordY,coordZ,diameter_mm.")
    ],
    excluded: Annotated[
        Path | None,
        typer.Option("--excluded", help="Findings whose marks are ignored (annotations_excluded.csv)."),
    ] = None,
    seriesuids: Annotated[
        Path | None,
        typer.Option(
            "--seriesuids", help="The evaluated scans (default: those in the findings or annotations)."
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the FROC curve to this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """FROC by the LUNA16 rules: sensitivity at 1/8..8 false positives per scan, and the CPM.

    A mark hits a nodule within its radius; a nodule hit several times counts once; marks on excluded
    findings are ignored; each scan's 100 most probable marks count.
    """
    from lungtk.detect.froc import froc as evaluate
    from lungtk.detect.froc import plot_froc, read_lesions, read_marks, read_seriesuids

    if plot is not None and not plot.name.lower().endswith(PLOT_SUFFIXES):
        raise LungtkError(f"--plot {plot}: name an image file ending in {', '.join(PLOT_SUFFIXES)}")
    scans = read_seriesuids(seriesuids) if seriesuids else None
    nodules = read_lesions(annotations)
    ignored = read_lesions(excluded, excluded=True) if excluded else []
    if scans is not None:  # as LUNA16's script: the annotations of scans not evaluated do not count
        evaluated = set(scans)
        nodules = [n for n in nodules if n.uid in evaluated]
        ignored = [e for e in ignored if e.uid in evaluated]
    result = evaluate(read_marks(findings), nodules, ignored, scans)
    if result.nodules == 0:  # every sensitivity would be 0 of 0: no number to report
        raise LungtkError(
            f"{annotations}: no nodule to find in the evaluated scans ({result.scans}), so the FROC is "
            "undefined; give the annotations of these scans"
            + (" (and check --seriesuids)" if seriesuids else "")
        )
    if plot is not None:
        plot_froc(result, plot)
        note(f"wrote {plot}")
    if as_json:
        stdout.print_json(json.dumps(result.as_dict()))
        return
    print(
        f"scans {result.scans}, nodules {result.nodules}, detected {result.detected}, "
        f"false positives {result.false_positives}"
    )
    print("fp_per_scan,sensitivity")
    for rate, sens in result.sensitivity_at.items():
        print(f"{rate:g},{sens:.4f}")
    print(f"CPM {result.cpm:.4f}")


@app.command("cls")
def cls(
    findings: Annotated[
        Path,
        typer.Option(
            "--findings",
            help="findings.csv of lungtk pipeline run: seriesuid,coordX,coordY,coordZ,probability and "
            "optionally malignancy (P(malignant)), texture and pathology (the most probable label).",
        ),
    ],
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            help="The data set the scans came from (LUNA16 layout with annotations_with_malignancy.csv, a "
            "lungtk phantom set, LNDb): its nodules, ratings and excluded findings.",
        ),
    ],
    tasks: Annotated[
        list[str] | None,
        typer.Option("--task", help="nodule, malignancy, texture or pathology; repeat. Default: all found."),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            help=f"Resamples for the AUC's 95% interval (0: none; at most {MAX_BOOTSTRAP}).",
            callback=checked(validate.count, low=0, high=MAX_BOOTSTRAP),
        ),
    ] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classification scores: accuracy, support-weighted F1, MCC, confusion matrix and ROC AUC with a
    bootstrap 95% interval per task, and seed 001's end-to-end table.

    Findings hit a nodule within its radius (LUNA16). nodule: every finding is a case (a nodule when it
    hits one; findings on excluded marks are left out) scored by its probability, e.g. a detector's
    candidates re-scored by nodule-cnn. malignancy / texture / pathology: each rated nodule a finding hits,
    by the hitting finding of highest probability (malignant: mean rating above 3). End-to-end (seed
    001): each nodule in its best column (missed, filtered out below probability 0.5, predicted benign,
    predicted malignant), a detection matching within 0.7 diameters.
    """
    from lungtk.cls.evaluation import TASKS, evaluate, read_findings
    from lungtk.ct_io.datasets import open_dataset

    chosen = tasks or list(TASKS)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        raise LungtkError(f"--task {unknown[0]}: use {', '.join(TASKS)}")
    index = open_dataset(truth)
    result = evaluate(read_findings(findings), index.annotations, index.excluded, chosen, bootstrap=bootstrap)
    if as_json:
        stdout.print_json(json.dumps(result))
        return
    print("task,n,accuracy,f1,mcc,auc,auc_low,auc_high")
    for task in TASKS:
        r = result.get(task)
        if not isinstance(r, dict):
            continue
        low, high = r.get("auc_ci95") or (None, None)
        cells = [r["accuracy"], r["f1"], r["mcc"], r.get("auc"), low, high]
        print(",".join([task, str(r["n"]), *("" if v is None else f"{v:.4f}" for v in cells)]))
    for task in TASKS:
        r = result.get(task)
        if isinstance(r, dict):
            note(
                f"{task} confusion (rows truth, columns predicted; {', '.join(r['labels'])}): {r['confusion']}"
            )
    table = result.get("end_to_end")
    if isinstance(table, dict):
        note("end to end (seed 001): " + "; ".join(f"{row} {dict(cols)}" for row, cols in table.items()))


@app.command("seg")
def seg(
    pred: Annotated[
        Path, typer.Option("--pred", help="Folder of predicted label images, named <seriesuid>.*")
    ],
    truth: Annotated[Path, typer.Option("--truth", help="Folder of reference label images, named alike.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the per-case scores to this CSV.")] = None,
    per_label: Annotated[
        bool,
        typer.Option(
            "--per-label",
            help="Score each truth label alone, against the prediction label that overlaps it most.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Segmentation scores: Dice, the LNDb set (J*, MAD, HD, C*, Bias, Std) and voxel precision / recall / F1.

    Files pair by series UID (the name without .mhd/.mha/.nii.gz/.nii/.nrrd) and must share their grid;
    any label > 0 is foreground. A truth without a prediction is scored as an empty prediction; a
    prediction without a truth is ignored. MAD and HD are means over the cases where both masks have
    voxels; the others are counted as "distance undefined".
    """
    from lungtk.core import write_text
    from lungtk.seg.metrics import evaluate_folders

    with progress_bar() as progress:
        task = progress.add_task("scoring", total=None)
        result = evaluate_folders(
            pred,
            truth,
            per_label=per_label,
            on_case=lambda _uid, done, total: progress.update(task, completed=done, total=total),
        )
    for line in result.notes:
        note(line)
    if result.cases and all(c.prediction_missing for c in result.cases):  # not one pair: the wrong folder
        raise LungtkError(
            f"--pred {pred}: none of its files pairs with a truth in {truth} by series UID (the name "
            "without .mhd/.nii.gz/...); give the folder of predictions for these scans"
        )
    if out is not None:
        write_text(out, result.per_case_csv())
        note(f"wrote {out}")
    if as_json:
        stdout.print_json(json.dumps(result.as_dict()))
        return
    rows = {
        **result.summary.as_dict(),
        "missing_predictions": len(result.missing_predictions),
        "extra_predictions": len(result.extra_predictions),
    }
    print("metric,value")
    for name, value in rows.items():
        shown = "nan" if value is None else str(value) if isinstance(value, int) else f"{value:.4f}"
        print(f"{name},{shown}")
