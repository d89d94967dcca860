"""The blob detector (lungtk-detect) on a phantom (lungtk-phantom) from a seed its calibration never saw:
a cross-package test, so it lives here rather than in packages/detect/tests."""

from __future__ import annotations

import numpy as np
import pytest

from lungtk.detect.blob import BlobDetector
from lungtk.phantom import make_scan


@pytest.mark.slow
def test_finds_phantom_nodules_from_an_unseen_seed() -> None:
    scan = make_scan(seed=90210, index=0, n_nodules=3)
    candidates = BlobDetector().detect(scan.ct)
    xyz = np.array([c.center_xyz for c in candidates[:10]])
    found = [
        np.min(np.linalg.norm(xyz - np.asarray(n.center_xyz), axis=1)) <= max(n.diameter_mm / 2, 2.0)
        for n in scan.nodules
    ]
    assert sum(found) >= 2, [(n.diameter_mm, n.texture, n.placement) for n in scan.nodules]
