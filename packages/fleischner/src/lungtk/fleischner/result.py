"""A follow-up recommendation for one patient."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

CATEGORIES = {
    0: "No routine follow-up (or optional CT at 12 months)",
    1: "CT at 6-12 months",
    2: "CT at 3-6 months",
    3: "CT at 3 months, PET/CT or tissue sampling",
}
"""The LNDb challenge's follow-up scale, which both schemes report on."""


@dataclass
class Recommendation:
    patient: str
    scheme: str
    category: int
    recommendation: str
    driver: str | None = None
    """The id of the nodule that drives the recommendation (None without nodules)."""
    nodules: int = 0
    risk: str | None = None
    notes: list[str] = field(default_factory=list)
    probabilities: list[float] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
