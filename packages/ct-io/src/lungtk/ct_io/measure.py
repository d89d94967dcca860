"""What a nodule mask measures on its scan: volume, equivalent diameter, density and the solid part."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungtk.core import NoduleMask, Volume
from lungtk.core.labels import AIR_HU
from lungtk.core.results import equivalent_diameter
from lungtk.ct_io.crops import crop_array

SOLID_HU = -300.0  # voxels at least this dense count as solid (ground glass stays below)


@dataclass(frozen=True)
class NoduleMeasurements:
    """Volume (mm³), equivalent-sphere diameter (mm), mean HU, the fraction of voxels at or above
    ``SOLID_HU`` and the equivalent diameter of the largest solid part (mm, 0 when there is none)."""

    volume_mm3: float
    diameter_mm: float
    mean_hu: float
    solid_fraction: float
    solid_component_mm: float


def measure(ct: Volume, nodule: NoduleMask) -> NoduleMeasurements:
    """Measure ``nodule`` (a mask crop with its own geometry) on ``ct``'s voxels."""
    mask = nodule.mask
    if not mask.any():
        return NoduleMeasurements(0.0, 0.0, float("nan"), 0.0, 0.0)
    start = nodule.start_in(ct.geometry)
    hu = crop_array(np.asarray(ct.array), start, mask.shape, AIR_HU)
    values = hu[mask].astype(np.float64)
    solid = mask & (hu >= SOLID_HU)
    largest = 0
    if solid.any():
        labels, n = ndimage.label(solid)
        largest = int(np.bincount(labels.ravel())[1:].max()) if n else 0
    voxel = nodule.geometry.voxel_volume
    volume = float(mask.sum()) * voxel
    return NoduleMeasurements(
        volume_mm3=volume,
        diameter_mm=equivalent_diameter(volume),
        mean_hu=float(values.mean()),
        solid_fraction=float((values >= SOLID_HU).mean()),
        solid_component_mm=equivalent_diameter(largest * voxel) if largest else 0.0,
    )
