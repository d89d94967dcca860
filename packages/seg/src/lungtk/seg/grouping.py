"""Seed 001's bridge from a segmentation to candidates: threshold the whole-scan probability, erode away
specks, label connected components, and give each one its HU-weighted centre of mass (patient mm), a
probability and a diameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import Candidate, Geometry, LungtkError, equivalent_diameter

# Face (6) or edge (18) neighbours: seed 001's reference labels with 6, its text says "share an edge".
CONNECTIVITY = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class GroupingRule:
    """How probabilities become candidates."""

    threshold: float = 0.5
    erosion: int = 1  # iterations of a binary erosion with the face-neighbour cross (0: none)
    connectivity: int = 6
    min_voxels: int = 1
    score: str = "peak"  # a candidate's probability: the mean or the peak of its component's voxels

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise LungtkError(f"grouping threshold {self.threshold}: use a probability between 0 and 1")
        if self.connectivity not in CONNECTIVITY:
            raise LungtkError(f"grouping connectivity {self.connectivity}: use 6, 18 or 26")
        if self.erosion < 0 or self.min_voxels < 1:
            raise LungtkError("grouping erosion must be >= 0 and min_voxels >= 1")
        if self.score not in ("mean", "peak"):
            raise LungtkError(f"grouping score {self.score!r}: use mean or peak")


def group_candidates(
    probability: NDArray[np.floating],
    hu: NDArray[np.number],
    geometry: Geometry,
    rule: GroupingRule = GroupingRule(),
    *,
    source: str = "",
) -> list[Candidate]:
    """One candidate per connected component of ``probability >= threshold`` after erosion, most probable
    first. Centre: centre of mass weighted by ``clip(HU, -1000, 1000) + 1001`` (seed 001); probability: the
    component's highest voxel probability; diameter: the equivalent diameter of the thresholded region
    the component was eroded from."""
    if probability.shape != hu.shape:
        raise ValueError(f"probability {probability.shape} and HU {hu.shape} must have the same shape")
    above = probability >= rule.threshold
    cores = ndimage.binary_erosion(above, iterations=rule.erosion) if rule.erosion else above
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[rule.connectivity])
    labels, n = ndimage.label(cores, structure=structure)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    weights = np.clip(hu.astype(np.float64), -1000.0, 1000.0) + 1001.0
    centres = np.array(ndimage.center_of_mass(weights, labels, index)).reshape(-1, 3)
    reduce = ndimage.mean if rule.score == "mean" else ndimage.maximum
    peaks = np.asarray(reduce(probability, labels, index), dtype=np.float64).reshape(-1)
    core_sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # The size is that of the thresholded region the core was eroded from (before erosion).
    regions, _ = ndimage.label(above, structure=structure)
    region_sizes = np.bincount(regions.ravel())
    sizes = np.empty(n)
    for i, box in enumerate(ndimage.find_objects(labels)):
        inside = labels[box] == i + 1
        sizes[i] = region_sizes[regions[box][inside][0]]
    xyz = geometry.irc2xyz(centres)
    found = [
        Candidate(
            tuple(xyz[i]),
            equivalent_diameter(sizes[i] * geometry.voxel_volume),
            float(np.clip(peaks[i], 0.0, 1.0)),
            source=source,
        )
        for i in range(n)
        if core_sizes[i] >= rule.min_voxels
    ]
    return sorted(found, key=lambda c: -c.probability)
