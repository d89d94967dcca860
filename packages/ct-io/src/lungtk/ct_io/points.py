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
from lungtk.core.validate import finite
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


def _row_names(source: str, count: int, lines: Sequence[int] | None) -> list[str]:
    """How messages name each row: ``"table.csv: line 5"`` (the file's line) or ``"table.csv: row 3"``."""
    if lines is not None:
        return [f"{source}: line {line}" for line in lines]
    return [f"{source}: row {i + 1}" for i in range(count)]


def _parse(rows: Sequence[dict[str, str]], columns: Sequence[str], names: Sequence[str]) -> np.ndarray:
    values = np.empty((len(rows), 3))
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            what = f"{names[i]}, column '{column}'"
            if column not in row or row[column] in (None, ""):
                raise LungtkError(f"{what}: is empty; every row needs a value here")
            values[i, j] = finite(row[column], what)
    return values


def convert_points(
    points: np.ndarray,
    grid: Grid,
    direction: Direction,
    *,
    continuous: bool = False,
    source: str = "input",
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """Convert (N, 3) points; with a known shape, a point outside the scan is an error naming the point
    (``names[i]``, else ``point i`` of ``source``)."""
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
            where = names[i] if names is not None else f"{source}: point {i + 1}"
            raise LungtkError(
                f"{where}: {tuple(round(float(v), 3) for v in points[i])} lies outside "
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
    lines: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """Convert every row; ``grid_for(row, i)`` gives the grid that row's point belongs to. Messages name
    a row by ``names[i]``, else by its line in the ``source`` file (``lines``), else by its count."""
    src_cols, dst_cols = point_columns(direction)
    names = list(names) if names is not None else _row_names(source, len(rows), lines)
    values = _parse(rows, src_cols, names)
    groups: dict[int, tuple[Grid, list[int]]] = {}
    for i, row in enumerate(rows):
        try:
            grid = grid_for(row, i)
        except RowError as exc:
            raise LungtkError(f"{names[i]}: {exc.problem}") from None
        groups.setdefault(id(grid), (grid, []))[1].append(i)
    out = [dict(row) for row in rows]
    for grid, indices in groups.values():
        converted = convert_points(
            values[indices],
            grid,
            direction,
            continuous=continuous,
            source=source,
            names=[names[i] for i in indices],
        )
        for i, point in zip(indices, converted, strict=True):
            out[i].update(zip(dst_cols, format_point(point), strict=True))
    return out


class RowError(LungtkError):
    """What is wrong with one row (``problem``); :func:`convert_rows` names the row by its file line."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"row {index + 1}: {problem}")
        self.problem = problem


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
        uid = (row.get(LUNA16_ID) or "").strip()
        if not uid:
            raise RowError(i, f"no '{LUNA16_ID}', which names the scan to look for under {self.root}")
        if uid not in self._grids:
            if uid not in self.scans:
                raise RowError(i, f"no scan named {uid}.* under {self.root}")
            self._grids[uid] = grid_from_scan(self.scans[uid])
        return self._grids[uid]
