"""``lungtk convert``: patient mm <-> voxel indices, and image formats."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated

import typer

from lungtk.core import LungtkError, write_text

app = typer.Typer(
    help="Convert points between patient mm (coordX,coordY,coordZ) and voxels (index,row,col), "
    "and images between formats.",
    no_args_is_help=True,
)

CtOpt = Annotated[Path | None, typer.Option("--ct", help="The scan whose geometry to use.")]
CtDirOpt = Annotated[
    Path | None,
    typer.Option("--ct-dir", help="Folder searched (recursively) for each row's scan by its `seriesuid`."),
]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="A CSV of points; other columns pass through.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write the CSV here instead of stdout.")]
ContinuousOpt = Annotated[
    bool, typer.Option("--continuous", help="Continuous voxel coordinates instead of the nearest voxel.")
]
OriginOpt = Annotated[str | None, typer.Option("--origin", help="Geometry without a scan: x,y,z in mm.")]
SpacingOpt = Annotated[str | None, typer.Option("--spacing", help="Geometry without a scan: x,y,z in mm.")]
DirectionOpt = Annotated[
    str | None, typer.Option("--direction", help="Geometry without a scan: 9 numbers, row-major (ITK).")
]
# Negative coordinates look like options; let them through as arguments.
_POINT_CONTEXT = {"ignore_unknown_options": True}


def _numbers(text: str, count: int, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise LungtkError(f"{option} takes {count} numbers separated by commas, got {text!r}") from None
    if len(values) != count:
        raise LungtkError(f"{option} takes {count} numbers, got {len(values)} ({text!r})")
    return values


def _convert(
    direction: str,
    point: list[str] | None,
    ct: Path | None,
    ct_dir: Path | None,
    csv_path: Path | None,
    out: Path | None,
    continuous: bool,
    origin: str | None,
    spacing: str | None,
    direction_matrix: str | None,
) -> None:
    import numpy as np

    from lungtk.core import Geometry
    from lungtk.ct_io.points import Grid, ScanDirectory, convert_rows, grid_from_scan, point_columns

    sources = [s for s in (ct, ct_dir, origin) if s is not None]
    if len(sources) != 1:
        raise LungtkError("give exactly one of --ct SCAN, --ct-dir DIR, or --origin/--spacing")
    if ct_dir is not None and csv_path is None:
        raise LungtkError("--ct-dir needs --csv (each row's `seriesuid` picks its scan)")
    if (point is None) == (csv_path is None):
        raise LungtkError("give a point (three numbers) or --csv FILE, not both")

    if ct is not None:
        grid = grid_from_scan(ct)
        grid_for = lambda row, i: grid  # noqa: E731
    elif ct_dir is not None:
        grid_for = ScanDirectory(ct_dir)
    else:
        if spacing is None:
            raise LungtkError("--origin needs --spacing too (and optionally --direction)")
        geometry = Geometry(
            np.array(_numbers(origin, 3, "--origin")),  # type: ignore[arg-type]
            np.array(_numbers(spacing, 3, "--spacing")),
            np.array(_numbers(direction_matrix, 9, "--direction")) if direction_matrix else np.eye(3),
        )
        grid = Grid(geometry)
        grid_for = lambda row, i: grid  # noqa: E731

    src_cols, dst_cols = point_columns(direction)  # type: ignore[arg-type]
    if point is not None:
        if len(point) != 3:
            raise LungtkError(f"a point is three numbers ({' '.join(src_cols)}), got {len(point)}")
        rows = [dict(zip(src_cols, point, strict=True))]
        fields = list(dst_cols)
        source = "point"
    else:
        assert csv_path is not None
        if not csv_path.is_file():
            raise LungtkError(f"{csv_path}: file not found")
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        missing = [c for c in src_cols if c not in header]
        if missing:
            raise LungtkError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; found {', '.join(header)}"
            )
        fields = header + [c for c in dst_cols if c not in header]
        source = str(csv_path)
    converted = convert_rows(rows, direction, grid_for, continuous=continuous, source=source)  # type: ignore[arg-type]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(converted)
    if out is None:
        sys.stdout.write(buffer.getvalue())
    else:
        write_text(out, buffer.getvalue())


@app.command("xyz2irc", context_settings=_POINT_CONTEXT)
def xyz2irc(
    point: Annotated[
        list[str] | None, typer.Argument(help="X Y Z in patient mm (LPS).", show_default=False)
    ] = None,
    ct: CtOpt = None,
    ct_dir: CtDirOpt = None,
    csv_path: CsvOpt = None,
    out: OutOpt = None,
    continuous: ContinuousOpt = False,
    origin: OriginOpt = None,
    spacing: SpacingOpt = None,
    direction: DirectionOpt = None,
) -> None:
    """Patient mm -> voxel: prints CSV `index,row,col` (nearest voxel unless --continuous).

    Examples: `lungtk convert xyz2irc --ct scan.mhd -- -100.5 20 -150` ;
    `lungtk convert xyz2irc --ct-dir LUNA16/ --csv annotations.csv --out annotations_irc.csv`
    """
    _convert("xyz2irc", point, ct, ct_dir, csv_path, out, continuous, origin, spacing, direction)


@app.command("irc2xyz", context_settings=_POINT_CONTEXT)
def irc2xyz(
    point: Annotated[
        list[str] | None, typer.Argument(help="INDEX ROW COL (may be fractional).", show_default=False)
    ] = None,
    ct: CtOpt = None,
    ct_dir: CtDirOpt = None,
    csv_path: CsvOpt = None,
    out: OutOpt = None,
    origin: OriginOpt = None,
    spacing: SpacingOpt = None,
    direction: DirectionOpt = None,
) -> None:
    """Voxel (index,row,col) -> patient mm: prints CSV `coordX,coordY,coordZ`."""
    _convert("irc2xyz", point, ct, ct_dir, csv_path, out, False, origin, spacing, direction)


@app.command("image")
def image(
    src: Annotated[
        Path, typer.Argument(help="Input scan: .mhd/.mha, .nii/.nii.gz, .nrrd or a DICOM folder.")
    ],
    dst: Annotated[Path, typer.Argument(help="Output file; the format follows the suffix.")],
    series: Annotated[
        str | None, typer.Option("--series", help="DICOM series UID when a folder holds several.")
    ] = None,
) -> None:
    """Convert an image between formats, keeping its geometry (e.g. a DICOM folder to .nii.gz)."""
    from lungtk.ct_io import read_ct, write_image

    ct = read_ct(src, series=series)
    write_image(dst, ct)
    print(dst)
