import re

import numpy as np
import pytest

from lungtk.core import Candidate, Finding, Geometry, NoduleMask


def test_mask_volume_diameter_and_centroid_in_mm():
    mask = np.zeros((10, 20, 20), bool)
    mask[4:6, 5:10, 5:10] = True  # 2 x 5 x 5 voxels
    g = Geometry(np.array([100.0, -50.0, -200.0]), np.array([0.5, 0.5, 2.0]), np.eye(3))
    nodule = NoduleMask(mask, g)
    assert nodule.volume_mm3 == pytest.approx(50 * 0.5 * 0.5 * 2.0)
    assert nodule.equivalent_diameter_mm == pytest.approx((6 * 25.0 / np.pi) ** (1 / 3))
    # centroid voxel (4.5, 7, 7) -> x = 100 + 7*0.5, y = -50 + 7*0.5, z = -200 + 4.5*2
    assert nodule.centroid_xyz == pytest.approx((103.5, -46.5, -191.0))


def test_candidate_validates_its_fields():
    with pytest.raises(ValueError, match="probability"):
        Candidate((0, 0, 0), 5.0, 1.5)
    with pytest.raises(ValueError, match="center_xyz"):
        Candidate((0, float("nan"), 0), 5.0, 0.5)
    c = Candidate((1, 2, 3), 5, 0.25)
    assert c.as_dict()["coordY"] == 2.0


def test_finding_labels_merge():
    f = Finding(Candidate((0, 0, 0), 4.0, 0.9)).with_labels({"nodule": {"yes": 0.9, "no": 0.1}})
    f = f.with_labels({"texture": {"solid": 1.0}})
    assert set(f.labels) == {"nodule", "texture"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"probability": "0.5"}, "probability must be a number"),
        ({"probability": None}, "probability must be a number"),
        ({"probability": float("nan")}, r"probability must be in \[0, 1\]"),
        ({"diameter_mm": "big"}, "diameter_mm must be a number"),
        ({"diameter_mm": float("inf")}, "diameter_mm must be finite"),
        ({"center_xyz": None}, "center_xyz must be 3 finite numbers"),
        ({"center_xyz": (0, "1", 2)}, "center_xyz must be a number"),
        ({"center_xyz": (0, 1)}, "center_xyz must be 3 finite numbers"),
        ({"box_mm": (0, 0, 0, 1, 1)}, "box_mm must be 6 finite numbers"),
        ({"box_mm": (0, 0, 0, 1, 1, float("nan"))}, "box_mm must be 6 finite numbers"),
        ({"box_mm": (2, 0, 0, 1, 1, 1)}, "box_mm must be 6 finite numbers"),
    ],
)
def test_candidate_refuses_what_is_not_a_finite_number(fields, message):
    values = {"center_xyz": (0.0, 0.0, 0.0), "diameter_mm": 5.0, "probability": 0.5, **fields}
    with pytest.raises(ValueError, match=message):
        Candidate(**values)


def test_candidate_takes_numpy_numbers_as_plain_floats():
    c = Candidate(np.array([1, 2, 3], dtype=np.float32), np.int64(4), np.float32(0.5), box_mm=np.zeros(6))
    assert type(c.probability) is float and type(c.center_xyz[0]) is float and c.box_mm == (0.0,) * 6


@pytest.mark.parametrize(
    "values",
    [np.full((2, 2, 2), np.nan), np.full((2, 2, 2), 0.5), np.full((2, 2, 2), 2), np.full((2, 2, 2), "1")],
)
def test_a_nodule_mask_is_booleans_or_zeros_and_ones(values):
    with pytest.raises(ValueError, match="must hold booleans or 0/1"):
        NoduleMask(values, Geometry())


def test_a_nodule_mask_of_zeros_and_ones_is_a_mask():
    m = NoduleMask(np.eye(3)[None].astype(np.float32), Geometry())
    assert m.mask.dtype == bool and m.mask.sum() == 3
    with pytest.raises(ValueError, match="geometry must be a Geometry"):
        NoduleMask(np.ones((1, 1, 1), bool), None)


@pytest.mark.parametrize(
    ("doubt", "problem"),
    [
        (np.zeros((2, 2, 2)), "got shape (2, 2, 2)"),
        (np.full((1, 3, 3), np.nan), "got NaN or infinite values"),
        (np.full((1, 3, 3), -0.1), "got negative values"),
    ],
)
def test_a_nodule_mask_s_uncertainty_says_what_is_wrong_with_it(doubt, problem):
    with pytest.raises(ValueError, match=re.escape(f"of the mask's shape (1, 3, 3), {problem}")):
        NoduleMask(np.eye(3)[None], Geometry(), uncertainty=doubt)
    sure = NoduleMask(np.eye(3)[None], Geometry(), uncertainty=np.zeros((1, 3, 3)))
    assert sure.uncertainty.dtype == np.float32
