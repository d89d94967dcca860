"""Region growing on blurred synthetic nodules whose volumes are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungtk.core import Candidate, Geometry
from lungtk.ct_io import CTVolume
from lungtk.seg.regiongrow import RegionGrowSegmenter

SPACING = (0.75, 0.75, 1.25)  # x, y, z
ORIGIN = (10.0, -40.0, -200.0)
CENTER_MM = np.array([24.0, 24.0, 25.0])  # from the origin, x y z
LUNG_HU = -860.0


def _volume(paint) -> CTVolume:
    shape = (40, 64, 64)
    k, r, c = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    x, y, z = c * SPACING[0] - CENTER_MM[0], r * SPACING[1] - CENTER_MM[1], k * SPACING[2] - CENTER_MM[2]
    hu = np.full(shape, LUNG_HU, dtype=np.float32)
    paint(hu, np.sqrt(x**2 + y**2 + z**2), x, y, z)
    hu = ndimage.gaussian_filter(hu, (0.5, 0.8, 0.8))  # a scanner's blur
    hu += np.random.default_rng(1).normal(0, 15, shape).astype(np.float32)
    return CTVolume(hu, Geometry(ORIGIN, SPACING), "synthetic")


def _candidate(diameter: float, offset=(0.0, 0.0, 0.0)) -> Candidate:
    return Candidate(tuple(np.asarray(ORIGIN) + CENTER_MM + offset), diameter, 0.9)


def _sphere_volume(d: float) -> float:
    return np.pi * d**3 / 6


@pytest.mark.parametrize(("texture_hu", "diameter"), [(30.0, 10.0), (-620.0, 10.0), (30.0, 5.0)])
def test_ball_volume_and_centre(texture_hu: float, diameter: float) -> None:
    def paint(hu, dist, *_):
        hu[dist <= diameter / 2] = texture_hu

    ct = _volume(paint)
    # The detector's centre and size are rough: 1 mm off and 30% too large.
    mask = RegionGrowSegmenter().segment(ct, [_candidate(diameter * 1.3, (1.0, -0.5, 0.0))])[0]
    assert mask.volume_mm3 == pytest.approx(_sphere_volume(diameter), rel=0.25)
    centre = np.asarray(mask.centroid_xyz)
    assert np.linalg.norm(centre - (np.asarray(ORIGIN) + CENTER_MM)) < 0.6


def test_part_solid_keeps_its_ground_glass() -> None:
    def paint(hu, dist, *_):
        hu[dist <= 6.0] = -600.0
        hu[dist <= 2.5] = 20.0

    mask = RegionGrowSegmenter().segment(_volume(paint), [_candidate(12.0)])[0]
    assert mask.volume_mm3 == pytest.approx(_sphere_volume(12.0), rel=0.25)


def test_vessel_touching_the_nodule_is_cut_off() -> None:
    def paint(hu, dist, x, y, z):
        hu[dist <= 4.0] = 30.0
        hu[(np.sqrt(y**2 + z**2) <= 1.0) & (x > 0)] = 30.0  # a 2 mm vessel leaving the nodule along +x

    mask = RegionGrowSegmenter().segment(_volume(paint), [_candidate(8.0)])[0]
    assert mask.volume_mm3 == pytest.approx(_sphere_volume(8.0), rel=0.3)
    xyz = mask.geometry.irc2xyz(np.argwhere(mask.mask)) - (np.asarray(ORIGIN) + CENTER_MM)
    assert xyz[:, 0].max() < 4.0 + 2.0  # the vessel beyond the nodule's edge stays out


def test_plain_lung_gives_an_empty_mask() -> None:
    mask = RegionGrowSegmenter().segment(_volume(lambda *a: None), [_candidate(6.0)])[0]
    assert mask.volume_mm3 == 0.0


def test_one_mask_per_candidate_in_order() -> None:
    def paint(hu, dist, *_):
        hu[dist <= 4.0] = 30.0

    ct = _volume(paint)
    masks = RegionGrowSegmenter().segment(ct, [_candidate(8.0), _candidate(6.0, (12.0, 12.0, 0.0))])
    assert len(masks) == 2 and masks[0].volume_mm3 > 0 and masks[1].volume_mm3 == 0
