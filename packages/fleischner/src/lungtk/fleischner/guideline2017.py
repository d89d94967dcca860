"""The 2017 Fleischner Society guidelines for incidental pulmonary nodules (MacMahon et al., Radiology
284(1), 2017), mapped onto the LNDb follow-up scale 0-3.

Risk changes the guideline's wording (and the "optional" CT for small solid nodules) but not the follow-up
interval, so the category is the same at both risk levels. Subsolid nodules have no risk split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from lungtk.fleischner.nodules import Nodule, Size, Texture
from lungtk.fleischner.result import Recommendation

SCHEME = "fleischner2017"
SOLID_COMPONENT_SUSPICIOUS_MM = 6.0


class Risk(StrEnum):
    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True)
class Cell:
    category: int
    text: str


_NO_FOLLOW_UP = Cell(0, "No routine follow-up.")
_OPTIONAL_12 = Cell(0, "Optional CT at 12 months.")

SOLID_SINGLE: dict[tuple[Size, Risk], Cell] = {
    (Size.SMALL, Risk.LOW): _NO_FOLLOW_UP,
    (Size.SMALL, Risk.HIGH): _OPTIONAL_12,
    (Size.MEDIUM, Risk.LOW): Cell(1, "CT at 6-12 months, then consider CT at 18-24 months."),
    (Size.MEDIUM, Risk.HIGH): Cell(1, "CT at 6-12 months, then CT at 18-24 months."),
    (Size.LARGE, Risk.LOW): Cell(3, "Consider CT at 3 months, PET/CT, or tissue sampling."),
    (Size.LARGE, Risk.HIGH): Cell(3, "Consider CT at 3 months, PET/CT, or tissue sampling."),
}
SOLID_MULTIPLE: dict[tuple[Size, Risk], Cell] = {
    (Size.SMALL, Risk.LOW): _NO_FOLLOW_UP,
    (Size.SMALL, Risk.HIGH): _OPTIONAL_12,
    (Size.MEDIUM, Risk.LOW): Cell(2, "CT at 3-6 months, then consider CT at 18-24 months."),
    (Size.MEDIUM, Risk.HIGH): Cell(2, "CT at 3-6 months, then at 18-24 months."),
    (Size.LARGE, Risk.LOW): Cell(2, "CT at 3-6 months, then consider CT at 18-24 months."),
    (Size.LARGE, Risk.HIGH): Cell(2, "CT at 3-6 months, then at 18-24 months."),
}
# Subsolid: < 6 mm (< 100 mm3) or >= 6 mm (>= 100 mm3).
GROUND_GLASS_SINGLE = {
    False: _NO_FOLLOW_UP,
    True: Cell(1, "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years."),
}
PART_SOLID_SINGLE = {
    False: _NO_FOLLOW_UP,
    True: Cell(
        2,
        "CT at 3-6 months to confirm persistence. If unchanged and solid component remains <6 mm, "
        "annual CT should be performed for 5 years.",
    ),
}
SUBSOLID_MULTIPLE = {
    False: Cell(2, "CT at 3-6 months. If stable, consider CT at 2 and 4 years."),
    True: Cell(2, "CT at 3-6 months. Subsequent management based on the most suspicious nodule(s)."),
}
SUSPICIOUS_PART_SOLID = Cell(
    3,
    "Persistent part-solid nodule with a solid component of 6 mm or more: highly suspicious; "
    "consider PET/CT, tissue sampling or resection.",
)
NO_NODULES = Cell(0, "No nodule the guideline applies to: no routine follow-up.")


def cell(nodule: Nodule, multiple: bool, risk: Risk) -> Cell:
    """The table cell for one nodule, seen as one of several nodules when ``multiple``."""
    size = nodule.size_2017()
    if nodule.texture is Texture.SOLID:
        return (SOLID_MULTIPLE if multiple else SOLID_SINGLE)[size, risk]
    if (
        nodule.texture is Texture.PART_SOLID
        and nodule.solid_component_mm is not None
        and nodule.solid_component_mm >= SOLID_COMPONENT_SUSPICIOUS_MM
    ):
        return SUSPICIOUS_PART_SOLID
    at_least_6mm = size is not Size.SMALL
    if multiple:
        return SUBSOLID_MULTIPLE[at_least_6mm]
    return (PART_SOLID_SINGLE if nodule.texture is Texture.PART_SOLID else GROUND_GLASS_SINGLE)[at_least_6mm]


@dataclass(frozen=True)
class Patient:
    """What the guideline asks about the patient; ``None`` means not known (no note is made)."""

    age: float | None = None
    known_cancer: bool | None = None
    immunocompromised: bool | None = None
    screening: bool | None = None


def applicability_notes(patient: Patient) -> list[str]:
    notes = []
    if patient.age is not None and patient.age < 35:
        notes.append("Guideline does not apply: patient younger than 35.")
    if patient.known_cancer:
        notes.append("Guideline does not apply: known primary cancer (nodules may be metastases).")
    if patient.immunocompromised:
        notes.append("Guideline does not apply: immunocompromised patient (infection risk).")
    if patient.screening:
        notes.append("Guideline does not apply to lung-cancer screening: use Lung-RADS.")
    return notes


def recommend(
    nodules: Sequence[Nodule],
    risk: Risk | str = Risk.HIGH,
    *,
    patient_id: str = "",
    patient: Patient | None = None,
) -> Recommendation:
    """The follow-up for one patient's nodules: the most suspicious nodule drives it.

    Calcified nodules are benign and left out. With several nodules each is read in the table for multiple
    nodules; the highest category wins, ties going to the larger nodule, then to the first listed.
    """
    risk = Risk(risk)
    counted = [n for n in nodules if not n.calcified]
    notes = applicability_notes(patient or Patient())
    calcified = len(nodules) - len(counted)
    if calcified:
        notes.append(f"{calcified} calcified (benign) nodule(s) left out.")
    if not counted:
        return Recommendation(
            patient_id, SCHEME, NO_NODULES.category, NO_NODULES.text, None, 0, risk.value, notes
        )
    multiple = len(counted) > 1
    cells = [cell(n, multiple, risk) for n in counted]
    best = max(range(len(counted)), key=lambda i: (cells[i].category, counted[i].extent_mm, -i))
    driver = counted[best]
    return Recommendation(
        patient_id,
        SCHEME,
        cells[best].category,
        cells[best].text,
        driver.id or str(best + 1),
        len(counted),
        risk.value,
        notes,
    )
