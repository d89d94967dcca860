"""Seed 000's patient feature vector for the learned follow-up predictor: nodule counts per LNDb volume
class (< 100, 100-250, >= 250 mm3) and per texture (ground-glass, part-solid, solid)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungtk.fleischner.lndb_score import SIZES, TEXTURES
from lungtk.fleischner.nodules import Nodule

FEATURE_NAMES = (
    "n_volume_lt100",
    "n_volume_100_250",
    "n_volume_ge250",
    "n_ground_glass",
    "n_part_solid",
    "n_solid",
)


def patient_features(nodules: Sequence[Nodule]) -> np.ndarray:
    """The 6 counts for one patient's non-calcified nodules."""
    counted = [n for n in nodules if not n.calcified]
    sizes = [sum(n.size_lndb() is s for n in counted) for s in SIZES]
    textures = [sum(n.texture is t for n in counted) for t in TEXTURES]
    return np.array(sizes + textures, dtype=np.float64)
