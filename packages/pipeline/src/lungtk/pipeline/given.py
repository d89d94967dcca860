"""Given locations as the detector: a table of nodule centres (a radiologist's clicks, a data set's
annotations) stands in for a detector, so segmenters and classifiers run on exactly those places.

The table has LUNA16's columns ``seriesuid,coordX,coordY,coordZ`` (patient mm) and optionally
``diameter_mm`` and ``probability`` (empty cells: 10 mm and 1); a scan the table does not name gets no
candidates. A nodule classifier's probability is averaged with the table's, or used alone when the table
gives no probability (no such column, or every cell of it empty).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lungtk.core import Candidate, LungtkError, Volume, validate
from lungtk.core.labels import LUNA16_DIAMETER, LUNA16_ID, LUNA16_PROBABILITY, LUNA16_XYZ
from lungtk.core.tables import Row, read_table

# A click has no size; segmenters grow into what they find within about twice this diameter.
DEFAULT_DIAMETER_MM = 10.0


@dataclass
class GivenCandidates:
    """A detector that returns the table's rows for each scan (``Detector`` protocol)."""

    by_scan: dict[str, list[Candidate]] = field(default_factory=dict)
    source: str = "given"
    table: str = ""  # the file the locations came from (named when one of them is unusable)
    scored: bool = True  # the table gives probabilities (else a nodule classifier's probability rules)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> GivenCandidates:
        path = Path(path)
        by_scan: dict[str, list[Candidate]] = {}
        scored = False
        for row in read_table(path, required=(LUNA16_ID, *LUNA16_XYZ)):
            scored = scored or bool(row.get(LUNA16_PROBABILITY))  # a column of empty cells gives none
            xyz = tuple(row.number(column, validate.coordinate) for column in LUNA16_XYZ)
            diameter = _optional(row, LUNA16_DIAMETER, validate.non_negative, DEFAULT_DIAMETER_MM)
            probability = _optional(row, LUNA16_PROBABILITY, validate.probability, 1.0)
            by_scan.setdefault(row.text(LUNA16_ID), []).append(
                Candidate(xyz, diameter, probability, source=f"{cls.source}:{path.name}")  # type: ignore[arg-type]
            )
        if not by_scan:
            raise LungtkError(f"{path}: the table has no rows; give one location per line")
        return cls(by_scan, table=str(path), scored=scored)

    def check_covers(self, uids: Iterable[str]) -> list[str]:
        """The table's scans that are not among ``uids`` (the scans of a run); a table that names none of
        them is an error (the wrong table, or UIDs written differently), not a run without candidates."""
        run = set(uids)
        others = [uid for uid in self.by_scan if uid not in run]
        if run and len(others) == len(self.by_scan):
            shown = ", ".join(repr(u) for u in others[:3]) + (" ..." if len(others) > 3 else "")
            raise LungtkError(
                f"{self.table or 'the given locations'}: names none of the {len(run)} scan(s) of this run "
                f"(its seriesuid column holds {shown}; the scans are e.g. {sorted(run)[0]!r}); give the "
                "locations of these scans"
            )
        return others

    def detect(self, ct: Volume) -> list[Candidate]:
        return list(self.by_scan.get(ct.series_uid, []))


def _optional(row: Row, column: str, check: validate.Check, default: float) -> float:
    """An empty cell (or no such column) is ``default``; anything else must pass ``check`` (a "nan" is
    an error here, not a missing value: it would silently become the default)."""
    return row.number(column, check) if row.get(column) else default
