"""The project's vocabulary: label names, table columns and the rules every package applies the same way.

Each fact has this one home; packages import it instead of writing the string again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# -- LUNA16 tables (annotations.csv, candidates.csv, submissions) ----------------------------------------
LUNA16_ID = "seriesuid"
LUNA16_XYZ = ("coordX", "coordY", "coordZ")
LUNA16_DIAMETER = "diameter_mm"
LUNA16_PROBABILITY = "probability"
LUNA16_CLASS = "class"
SUBMISSION_COLUMNS = (LUNA16_ID, *LUNA16_XYZ, LUNA16_PROBABILITY)

# -- classification tasks and their labels ({task: {label: probability}} in Finding.labels) --------------
NODULE = "nodule"
MALIGNANCY = "malignancy"
TEXTURE = "texture"
PATHOLOGY = "pathology"
TASK_LABELS: dict[str, tuple[str, ...]] = {
    NODULE: ("non-nodule", "nodule"),
    MALIGNANCY: ("benign", "malignant"),
    TEXTURE: ("ground-glass", "part-solid", "solid"),  # seed 000's GGO / part-solid / solid
    PATHOLOGY: ("AAH+AIS", "MIA", "IAC"),  # seed 004
}
TEXTURES = TASK_LABELS[TEXTURE]
POSITIVE = {NODULE: "nodule", MALIGNANCY: "malignant"}  # the label a binary task's probability is of

# -- Hounsfield units --------------------------------------------------------------------------------------
AIR_HU = -1000.0


# -- rules -------------------------------------------------------------------------------------------------
def is_reported(probability: float, threshold: float) -> bool:
    """A finding is reported (report, masks, recommendation) at ``threshold`` or above."""
    return probability >= threshold


def within_radius(point_xyz: ArrayLike, centre_xyz: Sequence[float], diameter_mm: float) -> bool:
    """LUNA16's hit rule: ``point`` lies within the nodule's radius of its centre (patient mm)."""
    offset = np.asarray(point_xyz, dtype=np.float64) - np.asarray(centre_xyz, dtype=np.float64)
    return bool(np.linalg.norm(offset) <= diameter_mm / 2.0)
