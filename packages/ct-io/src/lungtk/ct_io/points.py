"""Convert tables of points between patient mm (coordX, coordY, coordZ) and voxels (index, row, col).

Rows keep every other column; the converted columns are appended (or overwritten). Points are converted
per scan in one vectorised call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lungtk.core import Geometry, LungtkError
from lungtk.core.labels import LUNA16_ID, LUNA16_XYZ
from lungtk.ct_io.io.header import read_geometry
from lungtk.ct_io.scans import find_scans

IRC = ("index", "row", "col")
Direction = Literal["xyz2irc", "irc2xyz"]


@dataclass(frozen=True)
class Grid:
    """A geometry and, when a scan is known, its shape for bounds checks."""

    geometry: Geometry
    shape: tuple[int, ...] | None = None
    name: str = ""


def point_columns(direction: Direction) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (source, destination) columns of a conversion: LUNA16's coordX..Z and index, row, col."""
    return (LUNA16_XYZ, IRC) if direction == "xyz2irc" else (IRC, LUNA16_XYZ)


def _parse(rows: Sequence[dict[str, str]], columns: Sequence[str], source: str) -> np.ndarray:
    values = np.empty((len(rows), 3))
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            if column not in row or row[column] in (None, ""):
                raise LungtkError(f"{source}: row {i + 1} has no value in column '{column}'")
            try:
                values[i, j] = float(row[column])
            except ValueError:
                raise LungtkError(
                    f"{source}: row {i + 1}, column '{column}': {row[column]!r} is not a number"
                ) from None
    if not np.all(np.isfinite(values)):
        bad = int(np.argwhere(~np.isfinite(values))[0, 0]) + 1
        raise LungtkError(f"{source}: row {bad} has a non-finite coordinate")
    return values


def convert_points(
    points: np.ndarray, grid: Grid, direction: Direction, *, continuous: bool = False, source: str = "input"
) -> np.ndarray:
    """Convert (N, 3) points; with a known shape, a point outside the scan is an error."""
    if direction == "xyz2irc":
        irc = grid.geometry.xyz2irc(points, continuous=True)
        result = irc if continuous else np.floor(irc + 0.5).astype(np.int64)
    else:
        irc = points
        result = grid.geometry.irc2xyz(points)
    if grid.shape is not None and len(points):
        shape = np.asarray(grid.shape)
        outside = np.any((irc < -0.5) | (irc >= shape - 0.5), axis=1)
        if outside.any():
            i = int(np.argmax(outside))
            raise LungtkError(
                f"{source}: point {i + 1} {tuple(round(float(v), 3) for v in points[i])} lies outside "
                f"{grid.name or 'the scan'} (voxel {tuple(round(float(v), 1) for v in irc[i])}, shape "
                f"{tuple(int(n) for n in shape)}); check the coordinates and that they belong to this scan"
            )
    return result


def convert_rows(
    rows: Sequence[dict[str, str]],
    direction: Direction,
    grid_for: Callable[[dict[str, str], int], Grid],
    *,
    continuous: bool = False,
    source: str = "input",
) -> list[dict[str, str]]:
    """Convert every row; ``grid_for(row, i)`` gives the grid that row's point belongs to."""
    src_cols, dst_cols = point_columns(direction)
    values = _parse(rows, src_cols, source)
    groups: dict[int, tuple[Grid, list[int]]] = {}
    for i, row in enumerate(rows):
        grid = grid_for(row, i)
        groups.setdefault(id(grid), (grid, []))[1].append(i)
    out = [dict(row) for row in rows]
    for grid, indices in groups.values():
        converted = convert_points(values[indices], grid, direction, continuous=continuous, source=source)
        for i, point in zip(indices, converted, strict=True):
            out[i].update(zip(dst_cols, format_point(point), strict=True))
    return out


def format_point(point: Iterable[float]) -> list[str]:
    return [str(int(v)) if isinstance(v, np.integer) else f"{float(v):.4f}" for v in point]


def grid_from_scan(path: str | os.PathLike[str]) -> Grid:
    geometry, shape = read_geometry(path)
    return Grid(geometry, shape, name=str(path))


class ScanDirectory:
    """Looks up each row's scan by its ``seriesuid`` (``LUNA16_ID``) under a folder; caches geometries."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.scans = find_scans(root)
        self._grids: dict[str, Grid] = {}

    def __call__(self, row: dict[str, str], i: int) -> Grid:
        uid = row.get(LUNA16_ID)
        if not uid:
            raise LungtkError(f"row {i + 1} has no '{LUNA16_ID}'; --ct-dir needs it to find the scan")
        if uid not in self._grids:
            if uid not in self.scans:
                raise LungtkError(f"row {i + 1}: no scan named {uid}.* under {self.root}")
            self._grids[uid] = grid_from_scan(self.scans[uid])
        return self._grids[uid]
