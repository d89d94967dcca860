import numpy as np
import pytest
import SimpleITK as sitk

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io import CTVolume
from lungtk.ct_io.crops import crop, crop_array, paste
from lungtk.ct_io.io.sitk import to_sitk
from lungtk.ct_io.lungmask import lung_mask
from lungtk.ct_io.preprocess import PRESETS, Window, normalize, resample


def test_unit_window_is_seed_004_equation_5():
    raw = np.array([-3000, -1024, -312, 0, 400, 2000], dtype=np.int16)
    expected = (np.clip(raw, -1024, 400) - (-1024)) / (400 - (-1024)) * 2 - 1
    np.testing.assert_allclose(normalize(raw, "unit"), expected, atol=1e-6)


def test_nodulenet_and_luna_windows():
    raw = np.array([-1500, -1200, -300, 600, 900])
    np.testing.assert_allclose(normalize(raw, "nodulenet"), [0, 0, 127.5, 255, 255], atol=1e-4)
    np.testing.assert_array_equal(normalize(raw, "luna"), [-1000, -1000, -300, 600, 900])
    assert set(PRESETS) == {"unit", "luna", "nodulenet"}


def test_unknown_window_suggests():
    with pytest.raises(LungtkError, match="did you mean 'unit'"):
        normalize(np.zeros(3), "unti")
    with pytest.raises(ValueError):
        Window(10, 5)


def reference_resample(ct, spacing, interpolator):
    image = to_sitk(ct.array, ct.geometry)
    out_size = [
        int(n) for n in np.maximum(1, np.round(np.array(ct.shape[::-1]) * ct.geometry.spacing / spacing))
    ]
    f = sitk.ResampleImageFilter()
    f.SetOutputOrigin(image.GetOrigin())
    f.SetOutputDirection(image.GetDirection())
    f.SetOutputSpacing(tuple(spacing))
    f.SetSize(out_size)
    f.SetInterpolator(interpolator)
    f.SetDefaultPixelValue(-12345)
    return sitk.GetArrayFromImage(f.Execute(sitk.Cast(image, sitk.sitkFloat32)))


def test_resample_matches_simpleitk_linear_inside_the_volume():
    rng = np.random.default_rng(2)
    g = Geometry(np.array([-20.0, 5.0, 30.0]), np.array([0.7, 0.8, 2.5]), np.diag([1.0, -1.0, 1.0]))
    ct = CTVolume(rng.normal(0, 300, size=(12, 20, 24)).astype(np.float32), g)
    out = resample(ct, [1.0, 1.0, 1.0])
    ref = reference_resample(ct, np.array([1.0, 1.0, 1.0]), sitk.sitkLinear)
    assert out.shape == ref.shape
    inside = ref != -12345
    assert inside.mean() > 0.8
    np.testing.assert_allclose(out.array[inside], ref[inside], atol=1e-3)
    assert out.geometry.isclose(Geometry(g.origin, np.ones(3), g.direction))


def test_resample_labels_nearest_matches_simpleitk():
    rng = np.random.default_rng(4)
    g = Geometry(np.zeros(3), np.array([0.7, 0.7, 1.3]), np.eye(3))
    labels = rng.integers(0, 4, size=(10, 16, 16)).astype(np.uint8)
    out = resample(CTVolume(labels, g), [0.9, 0.9, 0.9], label=True)
    ref = reference_resample(CTVolume(labels, g), np.array([0.9, 0.9, 0.9]), sitk.sitkNearestNeighbor)
    inside = ref != -12345
    assert out.array.dtype == np.uint8
    np.testing.assert_array_equal(out.array[inside], ref[inside])


def test_crop_matches_simpleitk_region_of_interest_and_keeps_geometry():
    rng = np.random.default_rng(5)
    g = Geometry(np.array([-100.0, 50.0, -300.0]), np.array([0.7, 0.7, 2.0]), np.diag([1.0, 1.0, -1.0]))
    ct = CTVolume(rng.integers(-1000, 500, size=(20, 30, 40)).astype(np.int16), g)
    centre_irc = np.array([10, 14, 21])
    sub = crop(ct, size=(6, 8, 10), center_xyz=g.irc2xyz(centre_irc))
    roi = sitk.RegionOfInterest(to_sitk(ct.array, g), [10, 8, 6], [21 - 5, 14 - 4, 10 - 3])
    np.testing.assert_array_equal(sub.array, sitk.GetArrayFromImage(roi))
    assert sub.geometry.isclose(Geometry(np.array(roi.GetOrigin()), g.spacing, g.direction), atol=1e-9)
    np.testing.assert_allclose(sub.irc2xyz([3, 4, 5]), g.irc2xyz(centre_irc))


def test_crop_pads_outside_the_volume():
    array = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    out = crop_array(array, (-2, 3, 4), (4, 4, 4), pad_value=-1)
    assert out.shape == (4, 4, 4)
    assert (out[:2] == -1).all() and (out[:, 2:] == -1).all() and (out[:, :, 2:] == -1).all()
    np.testing.assert_array_equal(out[2:, :2, :2], array[0:2, 3:5, 4:6])
    assert (crop_array(array, (10, 10, 10), (2, 2, 2), pad_value=7) == 7).all()


def test_paste_is_the_inverse_of_crop():
    target = np.zeros((5, 5, 5), np.uint8)
    paste(target, np.ones((3, 3, 3), np.uint8), (-1, 3, 1))
    assert target.sum() == 2 * 2 * 3
    assert target[0:2, 3:5, 1:4].all()


def synthetic_chest(shape=(40, 96, 96), spacing=(0.8, 0.8, 2.0)):
    """Air around an elliptic body (40 HU) holding two elliptic lungs (-850 HU), a vessel and a nodule
    touching the pleura."""
    k, j, i = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    hu = np.full(shape, -1000.0, np.float32)
    body = ((j - 48) / 44) ** 2 + ((i - 48) / 46) ** 2 <= 1
    hu[body] = 40.0
    lungs = np.zeros(shape, bool)
    for ci in (28, 68):
        lungs |= ((k - 20) / 17) ** 2 + ((j - 46) / 30) ** 2 + ((i - ci) / 15) ** 2 <= 1
    hu[lungs] = -850.0
    hu[lungs & (np.hypot(j - 46, i - 28) <= 1.5)] = 30.0  # a vessel along the slice axis
    nodule_irc = np.array([20, 46, 16])  # juxta-pleural: crosses the outer wall of the left lung (i=13)
    nodule = ((k - 20) * 2.0) ** 2 + ((j - 46) * 0.8) ** 2 + ((i - 16) * 0.8) ** 2 <= 4.0**2
    hu[nodule] = 20.0
    return CTVolume(hu, Geometry(np.zeros(3), np.array(spacing), np.eye(3))), lungs, nodule_irc


def test_lung_mask_covers_lungs_vessels_and_pleural_nodule():
    ct, lungs, nodule_irc = synthetic_chest()
    mask = lung_mask(ct)
    assert (mask & lungs).sum() / lungs.sum() > 0.97
    assert (mask & ~lungs).sum() / lungs.sum() < 0.1
    assert mask[tuple(nodule_irc)]
    assert mask[20, 46, 28]  # vessel
    assert not mask[20, 2, 2] and not mask[20, 48, 48]  # outside air, mediastinum
