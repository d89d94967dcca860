"""``lungtk eval``: evaluate results against a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import note, progress_bar, stdout

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

    result = evaluate(
        read_marks(findings),
        read_lesions(annotations),
        read_lesions(excluded) if excluded else (),
        read_seriesuids(seriesuids) if seriesuids else None,
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
