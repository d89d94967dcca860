"""The project's vocabulary: label names, table columns and the rules every package applies the same way.

Each fact has this one home; packages import it instead of writing the string again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

# -- LUNA16 tables (annotations.csv, candidates.csv, submissions) ----------------------------------------
LUNA16_ID = "seriesuid"
LUNA16_XYZ = ("coordX", "coordY", "coordZ")
LUNA16_DIAMETER = "diameter_mm"
LUNA16_PROBABILITY = "probability"
LUNA16_CLASS = "class"
SUBMISSION_COLUMNS = (LUNA16_ID, *LUNA16_XYZ, LUNA16_PROBABILITY)
ANNOTATION_COLUMNS = (LUNA16_ID, *LUNA16_XYZ, LUNA16_DIAMETER)  # annotations(_excluded).csv
CANDIDATE_COLUMNS = (LUNA16_ID, *LUNA16_XYZ, LUNA16_CLASS)  # candidates(_V2).csv

# -- classification tasks and their labels ({task: {label: probability}} in Finding.labels) --------------
# A task's name is also the name of its column in the tables lungtk writes and reads (findings.csv,
# a phantom's nodules.csv, LUNA16's annotations_with_malignancy.csv).
NODULE = "nodule"
MALIGNANCY = "malignancy"
TEXTURE = "texture"
PATHOLOGY = "pathology"

NON_NODULE = "non-nodule"
BENIGN, MALIGNANT = "benign", "malignant"
GROUND_GLASS, PART_SOLID, SOLID = "ground-glass", "part-solid", "solid"  # seed 000's GGO / part-solid / solid
AAH_AIS, MIA, IAC = "AAH+AIS", "MIA", "IAC"  # seed 004's ground-glass pathology

TASK_LABELS: dict[str, tuple[str, ...]] = {
    NODULE: (NON_NODULE, NODULE),
    MALIGNANCY: (BENIGN, MALIGNANT),
    TEXTURE: (GROUND_GLASS, PART_SOLID, SOLID),  # from least to most solid
    PATHOLOGY: (AAH_AIS, MIA, IAC),  # from least to most invasive
}
TEXTURES = TASK_LABELS[TEXTURE]
POSITIVE = {NODULE: NODULE, MALIGNANCY: MALIGNANT}  # the label a binary task's probability is of

# -- Hounsfield units --------------------------------------------------------------------------------------
AIR_HU = -1000.0  # air, by the definition of the scale: what a region outside the body or a lung's air is
# The range CT scanners store (12 bits): the lowest value is what a scan holds outside its field of view,
# so crops that leave the scan are padded with it, as networks trained on real scans saw there.
STORED_HU = (-1024, 3071)  # integers: what int16 scans hold (and crop-cache keys are written with)
PAD_HU = STORED_HU[0]


def texture_of_rating(rating: float) -> str:
    """The texture class of a mean 1-5 LIDC / LNDb texture rating, binned as the LNDb challenge does:
    below 7/3 ground-glass, 7/3 to 11/3 part-solid, above 11/3 solid."""
    if not 1.0 <= rating <= 5.0:
        raise ValueError(f"a texture rating lies in 1..5, got {rating}")
    if rating < 7 / 3:
        return GROUND_GLASS
    return PART_SOLID if rating <= 11 / 3 else SOLID


MIA_MAX_SOLID_MM = 5.0  # minimally invasive: a solid (invasive) part of 5 mm or less


def pathology_of(texture: str, solid_component_mm: float) -> str | None:
    """The pathology class radiologists expect of a subsolid nodule from its solid part (IASLC / Fleischner
    2017): pure ground glass AAH or AIS, a solid part of 5 mm or less MIA, more IAC; None for a solid
    nodule (seed 004 classifies ground-glass nodules only). lungtk phantoms label their nodules by it."""
    if texture == GROUND_GLASS:
        return AAH_AIS
    if texture == PART_SOLID:
        return MIA if solid_component_mm <= MIA_MAX_SOLID_MM else IAC
    return None


# -- rules -------------------------------------------------------------------------------------------------
def is_reported(probability: float, threshold: float) -> bool:
    """A finding is reported (report, masks, recommendation) at ``threshold`` or above."""
    return probability >= threshold


def positive_probability(labels: Mapping[str, Mapping[str, float]], task: str) -> float | None:
    """The probability of a binary ``task``'s positive label (``POSITIVE``) in a finding's labels, or
    ``None`` when no classifier gave it."""
    distribution = labels.get(task)
    if not distribution or POSITIVE[task] not in distribution:
        return None
    return float(distribution[POSITIVE[task]])


def within_radius_matrix(
    points_xyz: ArrayLike, centres_xyz: ArrayLike, diameters_mm: ArrayLike
) -> NDArray[np.bool_]:
    """LUNA16's hit rule for many points and nodules at once: ``[i, j]`` is true when point ``i`` lies
    within nodule ``j``'s radius of its centre (patient mm; the boundary counts as inside)."""
    points = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
    centres = np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)
    radii = np.asarray(diameters_mm, dtype=np.float64).reshape(-1) / 2.0
    if len(radii) != len(centres):
        raise ValueError(f"{len(centres)} centres but {len(radii)} diameters")
    squared = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return squared <= radii[None, :] ** 2


def within_radius(point_xyz: ArrayLike, centre_xyz: Sequence[float], diameter_mm: float) -> bool:
    """LUNA16's hit rule: ``point`` lies within the nodule's radius of its centre (patient mm)."""
    return bool(within_radius_matrix(point_xyz, centre_xyz, diameter_mm)[0, 0])
