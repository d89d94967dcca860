"""Nodule measurements against counts made by hand on the same voxels."""

from __future__ import annotations

import numpy as np
import pytest

from lungtk.core import Geometry, NoduleMask
from lungtk.ct_io import CTVolume
from lungtk.ct_io.measure import measure


def test_measure_counts_solid_and_ground_glass_voxels() -> None:
    geometry = Geometry((5.0, -3.0, 100.0), (0.5, 0.5, 2.0))
    hu = np.full((10, 20, 20), -850, dtype=np.int16)
    hu[4:6, 5:15, 5:15] = -600  # 200 ground-glass voxels
    hu[4:6, 8:11, 8:11] = 40  # 18 of them solid
    hu[4:6, 1:2, 1:2] = 40  # 2 solid voxels outside the mask's crop
    ct = CTVolume(hu, geometry, "m")
    # The mask is a crop starting at voxel (3, 4, 4) of the scan, with the geometry that says so.
    crop = np.zeros((4, 12, 12), bool)
    crop[1:3, 1:11, 1:11] = True
    m = measure(ct, NoduleMask(crop, geometry.shifted((3, 4, 4))))
    voxel = 0.5 * 0.5 * 2.0
    assert m.volume_mm3 == pytest.approx(200 * voxel)
    assert m.solid_fraction == pytest.approx(18 / 200)
    assert m.mean_hu == pytest.approx((182 * -600 + 18 * 40) / 200)
    assert m.solid_component_mm == pytest.approx((6 * 18 * voxel / np.pi) ** (1 / 3))
    assert m.diameter_mm == pytest.approx((6 * 200 * voxel / np.pi) ** (1 / 3))


def test_empty_mask_measures_nothing() -> None:
    ct = CTVolume(np.zeros((4, 4, 4), np.int16), Geometry((0, 0, 0), (1, 1, 1)), "e")
    m = measure(ct, NoduleMask(np.zeros((2, 2, 2), bool), ct.geometry))
    assert m.volume_mm3 == 0 and m.solid_component_mm == 0
