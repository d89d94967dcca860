"""Given locations as the detector: a table of nodule centres (a radiologist's clicks, a data set's
annotations) stands in for a detector, so segmenters and classifiers run on exactly those places.

The table has LUNA16's columns ``seriesuid,coordX,coordY,coordZ`` (patient mm) and optionally
``diameter_mm`` and ``probability``; a scan the table does not name gets no candidates.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from lungtk.core import Candidate, LungtkError, Volume
from lungtk.core.labels import LUNA16_DIAMETER, LUNA16_ID, LUNA16_PROBABILITY, LUNA16_XYZ
from lungtk.core.tables import number, read_rows

# A click has no size; segmenters grow into what they find within about twice this diameter.
DEFAULT_DIAMETER_MM = 10.0


@dataclass
class GivenCandidates:
    """A detector that returns the table's rows for each scan (``Detector`` protocol)."""

    by_scan: dict[str, list[Candidate]] = field(default_factory=dict)
    source: str = "given"
    table: str = ""  # the file the locations came from (named when one of them is unusable)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GivenCandidates:
        path = Path(path)
        rows = read_rows(path, required=(LUNA16_ID, *LUNA16_XYZ))
        by_scan: dict[str, list[Candidate]] = {}
        for line, row in enumerate(rows, start=1):
            xyz = tuple(_finite(row, column, path, line) for column in LUNA16_XYZ)
            diameter = _optional(row, LUNA16_DIAMETER, path, line, DEFAULT_DIAMETER_MM)
            probability = _optional(row, LUNA16_PROBABILITY, path, line, 1.0)
            if diameter < 0:
                raise LungtkError(
                    f"{path}: line {line + 1}, column '{LUNA16_DIAMETER}': {diameter:g} is negative"
                )
            if not 0.0 <= probability <= 1.0:
                raise LungtkError(
                    f"{path}: line {line + 1}, column '{LUNA16_PROBABILITY}': {probability:g} is not "
                    "between 0 and 1"
                )
            by_scan.setdefault(row[LUNA16_ID], []).append(
                Candidate(xyz, diameter, probability, source=f"{cls.source}:{path.name}")  # type: ignore[arg-type]
            )
        if not by_scan:
            raise LungtkError(f"{path}: the table has no rows; give one location per line")
        return cls(by_scan, table=str(path))

    def detect(self, ct: Volume) -> list[Candidate]:
        return list(self.by_scan.get(ct.series_uid, []))


def _finite(row: dict[str, str], column: str, path: Path, line: int) -> float:
    value = number(row, column, path, line)
    if not math.isfinite(value):
        raise LungtkError(f"{path}: line {line + 1}, column '{column}': {value} is not a finite number")
    return value


def _optional(row: dict[str, str], column: str, path: Path, line: int, default: float) -> float:
    return _finite(row, column, path, line) if row.get(column, "") != "" else default
