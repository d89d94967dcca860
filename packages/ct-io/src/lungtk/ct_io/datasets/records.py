"""What a data-set index holds: scans (with their patient), annotated nodules and candidate tables.

Every coordinate is in patient mm (x, y, z; ITK/LPS), as the data sets publish them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lungtk.core import LungtkError


@dataclass(frozen=True)
class ScanEntry:
    """One scan of a data set; ``image`` is None when a table names a scan that is not on disk."""

    uid: str
    patient: str
    image: Path | None
    labels: tuple[Path, ...] = ()
    group: str = ""
    fleischner: int | None = None
    """The data set's follow-up category (LNDb scale 0-3) where it gives one."""


@dataclass(frozen=True)
class Annotation:
    """A finding marked by readers. Ratings (texture, malignancy) are means on the 1-5 LIDC/LNDb scales."""

    uid: str
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    is_nodule: bool = True
    volume_mm3: float | None = None
    texture: float | None = None
    malignancy: float | None = None
    malignant: bool | None = None
    pathology: str | None = None
    """A pathology class (lungtk.core.labels AAH+AIS / MIA / IAC) where the data set gives one."""
    readers: tuple[str, ...] = ()
    finding: str = ""


@dataclass(frozen=True)
class Candidates:
    """A column table of candidate points (LUNA16's candidates.csv holds 551065 rows).

    ``label`` is the file's class; ``annotation`` the index of the matched annotation or -1; ``diameter_mm``
    that annotation's diameter (0 when unmatched).
    """

    uid: NDArray[np.str_]
    center_xyz: NDArray[np.float64]
    label: NDArray[np.int8]
    annotation: NDArray[np.int64]
    diameter_mm: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.uid)

    def where(self, keep: NDArray[np.bool_]) -> Candidates:
        return Candidates(
            self.uid[keep],
            self.center_xyz[keep],
            self.label[keep],
            self.annotation[keep],
            self.diameter_mm[keep],
        )

    def of_scan(self, uid: str) -> Candidates:
        return self.where(self.uid == uid)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(
            np.array([], dtype=str),
            np.zeros((0, 3)),
            np.zeros(0, np.int8),
            np.zeros(0, np.int64),
            np.zeros(0),
        )


@dataclass
class DatasetIndex:
    """Scans, annotations, excluded findings and candidates of one data set on disk."""

    name: str
    root: Path
    scans: dict[str, ScanEntry]
    annotations: list[Annotation] = field(default_factory=list)
    excluded: list[Annotation] = field(default_factory=list)
    candidates: Candidates = field(default_factory=Candidates.empty)
    folds: dict[str, int] = field(default_factory=dict)
    """Official patient -> fold assignment where the data set publishes one (LNDb's trainFolds.csv)."""

    def __len__(self) -> int:
        return len(self.scans)

    def __iter__(self) -> Iterator[ScanEntry]:
        return iter(self.scans.values())

    def scan(self, uid: str) -> ScanEntry:
        try:
            return self.scans[uid]
        except KeyError:
            raise LungtkError(f"{self.name} at {self.root}: no scan {uid!r}") from None

    def on_disk(self) -> list[ScanEntry]:
        return [s for s in self.scans.values() if s.image is not None]

    def annotations_of(self, uid: str) -> list[Annotation]:
        return [a for a in self.annotations if a.uid == uid]

    def patients(self) -> dict[str, list[str]]:
        """Patient -> the uids of that patient's scans."""
        found: dict[str, list[str]] = {}
        for scan in self.scans.values():
            found.setdefault(scan.patient, []).append(scan.uid)
        return found

    def summary(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "root": str(self.root),
            "scans": len(self.scans),
            "scans_on_disk": len(self.on_disk()),
            "patients": len(self.patients()),
            "annotations": len(self.annotations),
            "nodules": sum(a.is_nodule for a in self.annotations),
            "excluded": len(self.excluded),
            "candidates": len(self.candidates),
            "candidates_positive": int(np.count_nonzero(self.candidates.label == 1)),
            "official_folds": len(set(self.folds.values())),
        }
