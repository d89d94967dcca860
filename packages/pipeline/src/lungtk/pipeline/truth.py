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
    path = Path(truth_csv)
    reported = [f for f in findings if is_reported(float(f[LUNA16_PROBABILITY]), threshold)]
    matches = []
    for row in read_table(path, required=(*LUNA16_XYZ, LUNA16_DIAMETER)):
        if seriesuid is not None and row.values.get(LUNA16_ID, seriesuid) != seriesuid:
            continue
        centre = tuple(row.number(c, validate.coordinate) for c in LUNA16_XYZ)
        diameter = row.number(LUNA16_DIAMETER, validate.non_negative)
        hit = next(
            (
                int(f["finding"])
                for f in reported
                if within_radius([f[c] for c in LUNA16_XYZ], centre, diameter)
            ),
            None,
        )
        matches.append(TruthMatch(centre, diameter, row.get(TEXTURE, ""), hit))  # type: ignore[arg-type]
    return matches
