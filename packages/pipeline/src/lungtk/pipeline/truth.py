"""Findings against known truth (a phantom's ``nodules.csv``, a data set's ``annotations.csv``): which
nodule a reported finding hits, by LUNA16's rule (within the nodule's radius of its centre)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungtk.core import validate
from lungtk.core.labels import (
    ANNOTATION_COLUMNS,
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_PROBABILITY,
    LUNA16_XYZ,
    TEXTURE,
    is_reported,
    within_radius,
)
from lungtk.core.tables import read_table


@dataclass(frozen=True)
class TruthMatch:
    """One true nodule and the first reported finding (its number) that hits it, if any."""

    center_xyz: tuple[float, float, float]
    diameter_mm: float
    texture: str
    finding: int | None

    @property
    def found(self) -> bool:
        return self.finding is not None


@dataclass(frozen=True)
class TruthNodule:
    """An annotated nodule: its scan, centre (patient mm), diameter and texture (empty when unknown)."""

    seriesuid: str | None
    center_xyz: tuple[float, float, float]
    diameter_mm: float
    texture: str


def read_truth(truth_csv: str | os.PathLike[str], *, per_scan: bool = False) -> list[TruthNodule]:
    """The nodules of an annotations table (LUNA16's ``annotations.csv``, a phantom's ``nodules.csv``):
    coordX..Z and diameter_mm are required, seriesuid and texture optional; with ``per_scan`` (nodules
    to be matched to the scans of a run, :func:`match_scans`) every row must name its seriesuid. A bad
    cell is one line naming the file, line and column."""
    path = Path(truth_csv)
    return [
        TruthNodule(
            row.text(LUNA16_ID) if per_scan else row.values.get(LUNA16_ID),
            tuple(row.number(c, validate.coordinate) for c in LUNA16_XYZ),  # type: ignore[arg-type]
            row.number(LUNA16_DIAMETER, validate.non_negative),
            row.get(TEXTURE, ""),
        )
        for row in read_table(
            path, required=ANNOTATION_COLUMNS if per_scan else (*LUNA16_XYZ, LUNA16_DIAMETER)
        )
    ]


def _match(
    nodules: Sequence[TruthNodule], findings: Sequence[Mapping[str, Any]], threshold: float
) -> list[TruthMatch]:
    reported = [f for f in findings if is_reported(float(f[LUNA16_PROBABILITY]), threshold)]
    return [
        TruthMatch(
            n.center_xyz,
            n.diameter_mm,
            n.texture,
            next(
                (
                    int(f["finding"])
                    for f in reported
                    if within_radius([f[c] for c in LUNA16_XYZ], n.center_xyz, n.diameter_mm)
                ),
                None,
            ),
        )
        for n in nodules
    ]


def match_truth(
    truth_csv: str | os.PathLike[str],
    findings: Sequence[Mapping[str, Any]],
    threshold: float,
    *,
    seriesuid: str | None = None,
) -> list[TruthMatch]:
    """Each nodule of ``truth_csv`` (of ``seriesuid`` if given) with the reported finding that hits it.

    ``findings`` are rows as the pipeline writes them (``coordX..Z``, ``probability``, ``finding``).
    """
    nodules = [n for n in read_truth(truth_csv) if seriesuid is None or n.seriesuid in (None, seriesuid)]
    return _match(nodules, findings, threshold)


def match_scans(
    nodules: Sequence[TruthNodule], scans: Sequence[Mapping[str, Any]], threshold: float
) -> dict[str, list[TruthMatch]]:
    """Series UID -> its annotated nodules matched to its reported findings, for each scan record (as
    the pipeline writes them: ``seriesuid`` and ``findings``); ``nodules`` from
    ``read_truth(..., per_scan=True)`` (a nodule without a seriesuid belongs to no scan)."""
    by_scan: dict[str, list[TruthNodule]] = {}
    for n in nodules:
        if n.seriesuid is not None:
            by_scan.setdefault(n.seriesuid, []).append(n)
    return {
        s[LUNA16_ID]: _match(by_scan.get(s[LUNA16_ID], []), s.get("findings", []), threshold) for s in scans
    }


def unmatched_findings(
    matches: Sequence[TruthMatch], findings: Sequence[Mapping[str, Any]], threshold: float
) -> int:
    """How many reported findings lie within no annotated nodule's radius (LUNA16's rule: a second
    finding on a found nodule is not a false positive)."""
    return sum(
        1
        for f in findings
        if is_reported(float(f[LUNA16_PROBABILITY]), threshold)
        and not any(within_radius([f[c] for c in LUNA16_XYZ], m.center_xyz, m.diameter_mm) for m in matches)
    )
