"""The blob detector on shapes with known answers: a ball, a vessel, a geometry with an origin and
anisotropic voxels. (On a phantom from a seed the calibration never saw: tests/test_blob_on_phantom.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io import CTVolume
from lungtk.detect.blob import FEATURES, BlobDetector, load_calibration

SPACING = (0.7, 0.7, 1.5)  # x, y, z
ORIGIN = (-120.0, 35.0, -310.0)


def _lung_box(shape=(48, 120, 120)) -> tuple[CTVolume, np.ndarray, np.ndarray]:
    """Lung-like air (-850 HU, light noise) with a 10 mm solid ball and a 3 mm vessel along x."""
    rng = np.random.default_rng(0)
    geometry = Geometry(ORIGIN, SPACING)
    hu = np.full(shape, -850.0, dtype=np.float32) + rng.normal(0, 15, shape).astype(np.float32)
    k, r, c = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    z, y, x = k * SPACING[2], r * SPACING[1], c * SPACING[0]
    ball_mm = np.array([30.0, 40.0, 36.0])  # x, y, z offsets from the origin
    ball = (x - ball_mm[0]) ** 2 + (y - ball_mm[1]) ** 2 + (z - ball_mm[2]) ** 2 <= 5.0**2
    vessel = ((y - 55.0) ** 2 + (z - 36.0) ** 2 <= 1.5**2) & (x > 10) & (x < 75)
    hu[ball | vessel] = 30.0
    lungs = np.ones(shape, bool)
    lungs[:2], lungs[-2:], lungs[:, :2], lungs[:, -2:], lungs[:, :, :2], lungs[:, :, -2:] = (False,) * 6
    return CTVolume(hu, geometry, "box"), lungs, np.asarray(ORIGIN) + ball_mm


def test_ball_is_found_at_its_patient_position_with_its_size() -> None:
    ct, lungs, ball_xyz = _lung_box()
    peaks = BlobDetector().peaks(ct, lungs)
    xyz = ct.geometry.irc2xyz(peaks.irc)
    nearest = int(np.argmin(np.linalg.norm(xyz - ball_xyz, axis=1)))
    assert np.linalg.norm(xyz[nearest] - ball_xyz) < 1.5
    assert 7.0 <= peaks.diameter_mm[nearest] <= 14.0  # the scale grid is a factor ~1.4 apart
    features = dict(zip(FEATURES, peaks.features[nearest], strict=True))
    # A ball bends equally in all directions: all three Hessian eigenvalues alike.
    assert features["flatness"] > 0.7 and features["tubularity"] > 0.7
    assert features["shell_dense"] < 0.05


def test_vessel_reads_as_a_tube_and_ranks_below_the_ball() -> None:
    ct, lungs, ball_xyz = _lung_box()
    detector = BlobDetector()
    peaks = detector.peaks(ct, lungs)
    xyz = ct.geometry.irc2xyz(peaks.irc)
    on_vessel = (np.abs(xyz[:, 1] - (ORIGIN[1] + 55.0)) < 2) & (np.abs(xyz[:, 0] - (ORIGIN[0] + 42)) < 20)
    assert on_vessel.any()
    tubularity = peaks.features[on_vessel, FEATURES.index("tubularity")]
    assert np.all(tubularity < 0.3)  # one eigenvalue near zero along the vessel
    candidates = detector.detect(ct, lungs)
    best = np.asarray(candidates[0].center_xyz)
    assert np.linalg.norm(best - ball_xyz) < 1.5
    assert candidates[0].probability > max(c.probability for c in candidates[1:])


def test_nothing_outside_the_lungs() -> None:
    ct, lungs, _ = _lung_box()
    assert BlobDetector().detect(ct, np.zeros_like(lungs)) == []


def test_calibration_matches_the_features() -> None:
    calibration = load_calibration()
    assert calibration["features"] == list(FEATURES)
    assert len(calibration["coef"]) == len(FEATURES)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_candidates": -5}, "blob.max_candidates"),
        ({"scales": 0}, "blob.scales"),
        ({"min_diameter_mm": float("nan")}, "blob.min_diameter_mm"),
        ({"min_contrast_hu": -1.0}, "blob.min_contrast_hu"),
        ({"min_diameter_mm": 20.0, "max_diameter_mm": 10.0}, "above max_diameter_mm"),
    ],
)
def test_blob_settings_are_checked(settings, message):
    from lungtk.core import LungtkError
    from lungtk.detect.blob import BlobDetector

    with pytest.raises(LungtkError, match=message):
        BlobDetector(**settings)
