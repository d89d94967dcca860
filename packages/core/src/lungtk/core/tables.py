"""Read CSV tables with one-line errors that name the file, line and column (data-set tables, findings,
annotations)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lungtk.core.errors import LungtkError


def read_columns(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Column name -> its cells (as written, not stripped), for big tables such as LUNA16's
    551065-row candidates.csv."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise LungtkError(
                    f"{path}: no column {', '.join(repr(m) for m in missing)} (the header has "
                    f"{', '.join(header) or 'nothing'}); is this the right file?"
                )
            rows = [row for row in reader if row]
    except FileNotFoundError:
        raise LungtkError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise LungtkError(f"{path}: not a UTF-8 text CSV file") from None
    short = next((i for i, row in enumerate(rows, start=1) if len(row) < len(header)), None)
    if short is not None:
        raise LungtkError(f"{path}: line {short + 1} has fewer cells than the header's {len(header)}")
    columns = list(zip(*rows, strict=False)) if rows else [() for _ in header]
    return {name: list(cells) for name, cells in zip(header, columns, strict=False)}


def read_rows(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (header names stripped); every ``required`` column must exist."""
    columns = read_columns(path, required)
    names = list(columns)
    return [
        {name: cell.strip() for name, cell in zip(names, cells, strict=True)}
        for cells in zip(*columns.values(), strict=True)
    ]


def number(row: dict[str, str], column: str, path: Path, line: int) -> float:
    """``row[column]`` as a float; ``line`` is the 1-based data row, reported as the file's line."""
    text = row.get(column, "")
    try:
        return float(text)
    except ValueError:
        raise LungtkError(f"{path}: line {line + 1}, column '{column}': {text!r} is not a number") from None


def optional_number(row: dict[str, str], column: str, path: Path, line: int) -> float | None:
    return number(row, column, path, line) if row.get(column, "") not in ("", "nan", "NaN") else None
