"""``lungtk eval``: evaluate results against a reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import note, stdout

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
