"""``lungtk example``: the commands this plugin adds."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Commands of the example plugin (a template for your own).", no_args_is_help=True)


@app.command("blobs")
def blobs(
    scan: Annotated[Path, typer.Argument(help="A CT scan (.mhd, .nii.gz, .nrrd or a DICOM folder).")],
    top: Annotated[int, typer.Option(min=1, help="How many blobs to report.")] = 5,
    diameter: Annotated[float, typer.Option(min=1.0, help="Blob diameter in mm.")] = 8.0,
) -> None:
    """Print the brightest compact blobs of SCAN as CSV (LUNA16 columns, patient mm)."""
    from lungtk.core.labels import SUBMISSION_COLUMNS
    from lungtk.ct_io import read_ct
    from lungtk_example_plugin.detector import BrightestBlobDetector

    ct = read_ct(scan)
    found = BrightestBlobDetector(diameter_mm=diameter, top=top).detect(ct)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(SUBMISSION_COLUMNS)
    for c in found:
        writer.writerow([ct.series_uid, *(f"{v:.2f}" for v in c.center_xyz), f"{c.probability:.4f}"])
