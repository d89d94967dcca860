"""``lungtk convert``: patient mm <-> voxel indices, and image formats."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lungtk.core import LungtkError, validate, write_text

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


def _geometry(origin: str, spacing: str | None, direction: str | None) -> Any:
    """The geometry that --origin/--spacing/--direction give, each number checked (finite; positive
    spacing; an invertible direction matrix)."""
    import numpy as np

    from lungtk.core import Geometry

    if spacing is None:
        raise LungtkError("--origin needs --spacing too (and optionally --direction)")
    xyz = ("x", "y", "z")
    origin_mm = validate.number_list(origin, "--origin", 3, validate.coordinate, names=xyz)
    spacing_mm = validate.number_list(spacing, "--spacing", 3, validate.positive, names=xyz)
    matrix = np.eye(3)
    if direction is not None:
        matrix = np.array(validate.number_list(direction, "--direction", 9)).reshape(3, 3)
        if abs(np.linalg.det(matrix)) < 1e-6:
            raise LungtkError(
                f"--direction: {direction!r} is not an invertible 3x3 matrix (row-major); e.g. "
                "1,0,0,0,1,0,0,0,1 for an axial scan"
            )
    try:
        return Geometry(np.array(origin_mm), np.array(spacing_mm), matrix)
    except ValueError as exc:  # what the checks above missed, said as the geometry says it
        raise LungtkError(f"--origin/--spacing/--direction: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


MAX_INDEX = 1e7  # a voxel index: no scan has ten million voxels along an axis


def _point_check(direction: str) -> validate.Check:
    """The check for one input coordinate: patient mm for xyz2irc, a voxel index for irc2xyz."""
    if direction == "xyz2irc":
        return validate.coordinate
    return lambda value, what: validate.in_range(
        value, what, -MAX_INDEX, MAX_INDEX, expected=f"a voxel index within +-{MAX_INDEX:.0f}"
    )


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
    from lungtk.ct_io.points import Grid, ScanDirectory, convert_rows, grid_from_scan, point_columns

    # Negative numbers pass as arguments, so a mistyped option lands among the point's numbers.
    unknown = next((p for p in point or [] if p.startswith("-") and not _is_number(p)), None)
    if unknown is not None:
        raise LungtkError(f"{unknown}: no such option of `lungtk convert {direction}` (see --help)")
    sources = [s for s in (ct, ct_dir, origin) if s is not None]
    if len(sources) != 1:
        raise LungtkError("give exactly one of --ct SCAN, --ct-dir DIR, or --origin/--spacing")
    if origin is None and (spacing is not None or direction_matrix is not None):
        raise LungtkError("--spacing and --direction go with --origin (a geometry without a scan)")
    if ct_dir is not None and csv_path is None:
        raise LungtkError("--ct-dir needs --csv (each row's `seriesuid` picks its scan)")
    if point is not None and csv_path is not None:
        raise LungtkError("give a point (three numbers) or --csv FILE, not both")
    if point is None and csv_path is None:
        raise LungtkError("give a point (three numbers) or --csv FILE")

    if ct is not None:
        grid = grid_from_scan(ct)
        grid_for = lambda row, i: grid  # noqa: E731
    elif ct_dir is not None:
        grid_for = ScanDirectory(ct_dir)
    else:
        assert origin is not None
        grid = Grid(_geometry(origin, spacing, direction_matrix))
        grid_for = lambda row, i: grid  # noqa: E731

    src_cols, dst_cols = point_columns(direction)  # type: ignore[arg-type]
    if point is not None:
        if len(point) != 3:
            raise LungtkError(f"a point is three numbers ({' '.join(src_cols)}), got {len(point)}")
        for column, value in zip(src_cols, point, strict=True):
            _point_check(direction)(value, f"point {column}")
        rows = [dict(zip(src_cols, point, strict=True))]
        fields = list(dst_cols)
        source, lines, names = "point", None, [f"point ({' '.join(point)})"]
    else:
        assert csv_path is not None
        from lungtk.core.tables import read_header_and_table

        header, table = read_header_and_table(csv_path, tuple(src_cols))
        check = _point_check(direction)
        for row in table:
            for column in src_cols:
                row.number(column, check)
        rows = [row.values for row in table]
        fields = header + [c for c in dst_cols if c not in header]
        source, lines, names = str(csv_path), [row.line for row in table], None
    converted = convert_rows(
        rows,
        direction,  # type: ignore[arg-type]
        grid_for,
        continuous=continuous,
        source=source,
        lines=lines,
        names=names,
    )
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
