"""Read CSV tables with one-line errors that name the file, line and column (data-set tables, findings,
annotations).

Numbers go through :mod:`lungtk.core.validate`: NaN and infinity are never a number here, and a reader
passes a check (``probability``, ``positive``, ``coordinate``, ...) for the range its column allows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lungtk.core.errors import LungtkError
from lungtk.core.validate import Check, cell_name, finite

MISSING = ("", "nan", "NaN", "NA", "N/A")  # what an optional cell may hold for "no value"


def _records(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and (file line, cells) of every non-blank record."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            twice = sorted({name for name in header if name and header.count(name) > 1})
            if twice:
                raise LungtkError(
                    f"{path}: the header names column {', '.join(repr(t) for t in twice)} more than once"
                )
            missing = [name for name in required if name not in header]
            if missing:
                raise LungtkError(
                    f"{path}: no column {', '.join(repr(m) for m in missing)} (the header has "
                    f"{', '.join(header) or 'nothing'}); is this the right file?"
                )
            records = []
            while True:
                line = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    break
                if any(cell.strip() for cell in row):
                    records.append((line, row))
    except FileNotFoundError:
        raise LungtkError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LungtkError(f"{path}: is a folder; give the CSV file") from None
    except PermissionError:
        raise LungtkError(f"{path}: permission denied; check that you may read it") from None
    except UnicodeDecodeError:
        raise LungtkError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise LungtkError(f"{path}: not a readable CSV file ({exc})") from None
    short = next(((line, row) for line, row in records if len(row) < len(header)), None)
    if short is not None:
        raise LungtkError(
            f"{path}: line {short[0]} has {len(short[1])} cell(s), fewer than the header's {len(header)}"
        )
    return header, records


def read_columns(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Column name -> its cells (as written, not stripped), for big tables such as LUNA16's
    551065-row candidates.csv. Blank lines are skipped: :func:`read_column_table` keeps the lines."""
    return read_column_table(path, required)[0]


def read_column_table(
    path: str | os.PathLike[str], required: tuple[str, ...] = ()
) -> tuple[dict[str, list[str]], list[int]]:
    """:func:`read_columns`'s columns and the file line of each row (the header is line 1), to pass to
    :func:`number_column` so a bad cell below a blank line is named by its real line."""
    header, records = _records(Path(path), required)
    rows = [row for _, row in records]
    columns = list(zip(*rows, strict=False)) if rows else [() for _ in header]
    return (
        {name: list(cells) for name, cells in zip(header, columns, strict=False)},
        [line for line, _ in records],
    )


def read_rows(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (header names and cells stripped); every ``required`` column must exist.

    Blank lines are skipped, so a row's position is not always its line in the file:
    :func:`read_table` keeps the lines for messages."""
    return [row.values for row in read_table(path, required)]


@dataclass(frozen=True)
class Row:
    """One CSV record with where it came from, for messages: ``row.number("diameter_mm", positive)``."""

    values: dict[str, str]
    path: Path
    line: int  # the file's line (the header is line 1)

    def name(self, column: str) -> str:
        return cell_name(self.path, self.line, column)

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def get(self, column: str, default: str = "") -> str:
        return self.values.get(column, default)

    def text(self, column: str, *, required: bool = True) -> str:
        """The stripped cell; an empty one is an error when ``required``."""
        value = self.values.get(column, "")
        if required and not value:
            raise LungtkError(f"{self.name(column)}: is empty; every row needs a value here")
        return value

    def number(self, column: str, check: Check = finite) -> float:
        """The cell as a number that passes ``check`` (default: any finite number)."""
        return check(self.values.get(column, ""), self.name(column))

    def optional(self, column: str, check: Check = finite) -> float | None:
        """The cell as a number that passes ``check``, or None when empty / ``nan`` / ``NA``."""
        text = self.values.get(column, "")
        return None if text in MISSING else check(text, self.name(column))


def read_table(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> list[Row]:
    """Rows of a CSV file with their file lines (header names and cells stripped)."""
    return read_header_and_table(path, required)[1]


def read_header_and_table(
    path: str | os.PathLike[str], required: tuple[str, ...] = ()
) -> tuple[list[str], list[Row]]:
    """The header (names stripped) and :func:`read_table`'s rows, for a reader that picks its columns
    from several possible names."""
    path = Path(path)
    header, records = _records(path, required)
    rows = [
        Row({name: cell.strip() for name, cell in zip(header, cells, strict=False)}, path, line)
        for line, cells in records
    ]
    return header, rows


def number(row: dict[str, str], column: str, path: Path, line: int, check: Check = finite) -> float:
    """``row[column]`` as a number that passes ``check`` (default: any finite number: NaN and infinity
    are refused); ``line`` is the 1-based data row, reported as the file's line."""
    return check(row.get(column, ""), cell_name(path, line + 1, column))


def optional_number(
    row: dict[str, str], column: str, path: Path, line: int, check: Check = finite
) -> float | None:
    """Like :func:`number`, but an empty / ``nan`` / ``NA`` cell is None."""
    return number(row, column, path, line, check) if row.get(column, "") not in MISSING else None


def number_column(
    cells: Sequence[str],
    column: str,
    path: str | os.PathLike[str],
    check: Check = finite,
    *,
    lines: Sequence[int] | None = None,
) -> NDArray[np.float64]:
    """A column of :func:`read_columns` as float64, fast (LUNA16's 551065 candidates): every cell must
    pass ``check`` (default: any finite number), else the first bad cell is a one-line error with its
    file, line and column. ``lines`` are the rows' file lines (:func:`read_column_table`); without them
    the line assumes no blank lines above the cell."""
    if lines is not None and len(lines) != len(cells):
        raise ValueError(f"{len(lines)} lines for {len(cells)} cells")
    try:
        values = np.array(cells, dtype=np.float64) if len(cells) else np.zeros(0)
        if check is finite and np.isfinite(values).all():
            return values
    except ValueError:
        pass
    return np.array(
        [
            check(text, cell_name(path, lines[i] if lines is not None else i + 2, column))
            for i, text in enumerate(cells)
        ],
        dtype=np.float64,
    )
