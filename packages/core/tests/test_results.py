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
