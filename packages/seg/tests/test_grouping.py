import numpy as np
import pytest

from lungtk.core import Geometry, LungtkError, equivalent_diameter
from lungtk.seg.grouping import GroupingRule, group_candidates


def _ball(shape, centre, radius):
    grid = np.indices(shape).astype(float)
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))) <= radius


def test_components_become_candidates_in_patient_mm():
    shape = (30, 40, 40)
    geometry = Geometry((-10.0, 5.0, 100.0), (0.5, 0.5, 2.0))
    big, small, speck = (
        _ball(shape, (10, 12, 12), 4),
        _ball(shape, (20, 28, 28), 2),
        _ball(shape, (5, 35, 5), 0),
    )
    probability = np.where(big, 0.9, 0.0) + np.where(small, 0.7, 0.0) + np.where(speck, 0.99, 0.0)
    hu = np.full(shape, -800.0)
    hu[big] = 50.0
    found = group_candidates(probability, hu, geometry, GroupingRule())
    assert [round(c.probability, 2) for c in found] == [0.9, 0.7]  # the 1-voxel speck is eroded away
    np.testing.assert_allclose(found[0].center_xyz, geometry.irc2xyz([10, 12, 12]), atol=1e-9)
    expected = equivalent_diameter(big.sum() * geometry.voxel_volume)
    assert found[0].diameter_mm == pytest.approx(expected)


def test_centre_of_mass_is_weighted_by_hu_as_seed_001():
    shape = (5, 5, 9)
    probability = np.zeros(shape)
    probability[1:4, 1:4, 1:8] = 0.8  # a 3x3x7 bar
    hu = np.full(shape, -1000.0)
    hu[1:4, 1:4, 5:8] = 1000.0  # its right end is dense
    (candidate,) = group_candidates(probability, hu, Geometry(), GroupingRule(erosion=0))
    cols = np.arange(1, 8, dtype=float)
    weight = np.where(cols >= 5, 2001.0, 1.0)  # clip(HU) + 1001
    assert candidate.center_xyz[0] == pytest.approx((cols * weight).sum() / weight.sum())


def test_connectivity_option_joins_diagonal_neighbours():
    probability = np.zeros((3, 4, 4))
    probability[1, 1, 1] = probability[1, 2, 2] = 0.9  # touch along an edge only
    hu = np.zeros_like(probability)
    assert len(group_candidates(probability, hu, Geometry(), GroupingRule(erosion=0, connectivity=6))) == 2
    assert len(group_candidates(probability, hu, Geometry(), GroupingRule(erosion=0, connectivity=18))) == 1


@pytest.mark.parametrize("kwargs", [{"threshold": 1.0}, {"connectivity": 8}, {"erosion": -1}])
def test_bad_rules_are_clear_errors(kwargs):
    with pytest.raises(LungtkError):
        GroupingRule(**kwargs)


def test_score_is_the_components_mean_or_peak_probability():
    probability = np.zeros((3, 5, 5))
    probability[1, 1:4, 1:4] = 0.6
    probability[1, 2, 2] = 0.96
    hu = np.zeros_like(probability)
    (peak,) = group_candidates(probability, hu, Geometry(), GroupingRule(erosion=0, score="peak"))
    (mean,) = group_candidates(probability, hu, Geometry(), GroupingRule(erosion=0, score="mean"))
    assert peak.probability == pytest.approx(0.96) and mean.probability == pytest.approx((8 * 0.6 + 0.96) / 9)
