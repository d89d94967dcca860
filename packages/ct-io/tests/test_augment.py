"""Augmentation: image and mask move together, seeded, and each transform does what its formula says."""

import math

import numpy as np
import pytest

from lungtk.core import LungtkError
from lungtk.ct_io.augment import (
    PRESETS,
    Affine,
    Augmentation,
    Elastic,
    Flip,
    GaussianNoise,
    Rot90,
    preset,
    warp_affine,
)


def ball(shape, centre, radius):
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    return (np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius).astype(np.uint8)


def centroid(mask):
    return np.argwhere(mask > 0).mean(axis=0)


@pytest.fixture
def pair():
    mask = ball((24, 32, 32), (10, 9, 20), 5)
    mask[2:8, 20:28, 3:11] = 2  # a second label, off-centre and asymmetric
    image = (mask > 0).astype(np.float32) * 100 - 50
    return image, mask


def test_same_seed_same_result_different_seed_different_result(pair):
    image, mask = pair
    for name, aug in PRESETS.items():
        a = aug(image, mask, rng=5)
        b = aug(image, mask, rng=np.random.default_rng(5))
        np.testing.assert_array_equal(a[0], b[0], err_msg=name)
        np.testing.assert_array_equal(a[1], b[1], err_msg=name)
    outputs = {preset("seed001")(image, mask, rng=s)[0].tobytes() for s in range(5)}
    assert len(outputs) == 5


@pytest.mark.parametrize(
    "transform",
    [Flip(p=1.0), Rot90(p=1.0), Affine(), Affine(shear=0.3), Elastic(p=1.0, magnitude=(3.0, 3.0))],
    ids=["flip", "rot90", "affine", "shear", "elastic"],
)
def test_mask_stays_on_the_image(pair, transform):
    image, mask = pair
    for seed in range(4):
        warped, warped_mask = Augmentation((transform,))(image, mask, rng=seed)
        assert warped.dtype == np.float32 and warped.shape == image.shape
        assert set(np.unique(warped_mask)) <= {0, 1, 2}
        # The foreground read back from the interpolated image (above the midpoint of the background's and
        # the labels' intensities) agrees with the nearest-neighbour mask up to edge voxels.
        a, b = warped > 0, warped_mask > 0
        dice = 2 * np.sum(a & b) / (a.sum() + b.sum())
        assert dice > 0.9, (seed, dice)


def test_flip_and_rot90_are_the_numpy_operations(pair):
    image, mask = pair
    # With p=1 every listed axis flips: the result is np.flip over all of them.
    out, out_mask = Augmentation((Flip(axes=(0, 2), p=1.0),))(image, mask, rng=0)
    np.testing.assert_array_equal(out, np.flip(image, (0, 2)))
    np.testing.assert_array_equal(out_mask, np.flip(mask, (0, 2)))
    rotations = {Augmentation((Rot90(p=1.0),))(image, mask, rng=s)[1].tobytes() for s in range(20)}
    assert rotations == {np.rot90(mask, k, axes=(1, 2)).tobytes() for k in (1, 2, 3)}


def test_rotation_about_the_index_axis_moves_the_centroid_as_a_rotation_matrix_says():
    shape = (9, 41, 41)
    mask = ball(shape, (4, 12, 26), 3)
    theta = math.radians(40)
    forward = np.eye(3)
    forward[1:, 1:] = [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
    image, warped = warp_affine(mask.astype(np.float32), mask, forward, np.zeros(3))
    centre = (np.asarray(shape) - 1) / 2
    expected = forward @ (centroid(mask) - centre) + centre
    np.testing.assert_allclose(centroid(warped), expected, atol=0.15)
    np.testing.assert_allclose(centroid(image), expected, atol=0.15)
    assert abs(int(warped.sum()) - int(mask.sum())) <= 0.05 * mask.sum()  # a rotation keeps the volume


def test_scaling_scales_volume_and_shift_moves_by_the_shift():
    shape = (40, 40, 40)
    mask = ball(shape, (19.5, 19.5, 19.5), 8)
    _, grown = warp_affine(mask.astype(np.float32), mask, np.diag([1.25, 1.25, 1.25]), np.zeros(3))
    assert grown.sum() / mask.sum() == pytest.approx(1.25**3, rel=0.04)
    _, moved = warp_affine(mask.astype(np.float32), mask, np.eye(3), np.array([3.0, -2.0, 5.0]))
    np.testing.assert_allclose(centroid(moved) - centroid(mask), [3.0, -2.0, 5.0], atol=1e-9)


def test_elastic_displacement_is_bounded_by_its_magnitude(pair):
    image, mask = pair
    _out, out_mask = Augmentation((Elastic(p=1.0, magnitude=(2.0, 2.0)),))(image, mask, rng=3)
    assert not np.array_equal(out_mask, mask)
    assert np.linalg.norm(centroid(out_mask == 1) - centroid(mask == 1)) <= 2.0 * math.sqrt(3)
    same, same_mask = Augmentation((Elastic(p=1.0, magnitude=(0.0, 0.0)),))(image, mask, rng=3)
    np.testing.assert_allclose(same, image, atol=1e-4)
    np.testing.assert_array_equal(same_mask, mask)


def test_noise_has_its_std_and_leaves_the_mask_alone(pair):
    image, mask = pair
    out, out_mask = Augmentation((GaussianNoise(std=10.0),))(image, mask, rng=1)
    assert np.std(out - image) == pytest.approx(10.0, rel=0.03)
    assert out_mask is mask or np.array_equal(out_mask, mask)


def test_probability_zero_changes_nothing_and_2d_works(pair):
    image, mask = pair
    none = Augmentation((Flip(p=0.0), Rot90(p=0.0), Affine(p=0.0), Elastic(p=0.0), GaussianNoise(p=0.0)))
    out, out_mask = none(image, mask, rng=0)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)
    out2d, mask2d = preset("seed001")(image[10], mask[10], rng=0)
    assert out2d.shape == mask2d.shape == image[10].shape
    image_only, nothing = preset("seed000")(image, rng=0)
    assert nothing is None and image_only.shape == image.shape


def test_bad_input_is_one_clear_error(pair):
    image, mask = pair
    with pytest.raises(LungtkError, match="mask shape"):
        preset("seed001")(image, mask[:-1])
    with pytest.raises(LungtkError, match="2D or 3D"):
        preset("seed001")(image[None])
    with pytest.raises(LungtkError, match="seed000, seed001, seed002"):
        preset("seed999")


@pytest.mark.parametrize("shape", [(64, 64, 64), (33, 50, 47), (40, 61)])
def test_elastic_fields_are_as_smooth_as_blurred_full_resolution_noise(shape):
    # the coarse-grid field (drawn sigma / 2 times coarser, blurred, interpolated up) against the definition:
    # full-resolution uniform noise blurred by a Gaussian of sigma voxels; compared by autocorrelation
    from scipy import ndimage

    from lungtk.ct_io.augment import _smooth_noise

    def correlation(field, lag):
        a = field - field.mean()
        return float(np.mean(a[lag:] * a[:-lag]) / np.mean(a * a))

    rng = np.random.default_rng(0)
    for sigma in (4.0, 6.0):
        ours = np.stack([_smooth_noise(shape, sigma, rng) for _ in range(8)])
        reference = np.stack([ndimage.gaussian_filter(rng.uniform(-1, 1, shape), sigma) for _ in range(8)])
        assert ours.shape[1:] == shape and ours.dtype == np.float32
        for lag in (1, int(sigma), int(2 * sigma)):
            mine = np.mean([correlation(f, lag) for f in ours])
            theirs = np.mean([correlation(f, lag) for f in reference])
            assert abs(mine - theirs) < 0.15, (sigma, lag, mine, theirs)
