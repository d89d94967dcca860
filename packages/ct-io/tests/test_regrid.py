"""Resampling onto another grid, checked against SimpleITK's resampler (an independent implementation)."""

import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io.regrid import covering_box, cube_geometry, resample_onto

sitk = pytest.importorskip("SimpleITK")


def _tilted(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _sitk_image(array, geometry):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetOrigin(tuple(geometry.origin))
    image.SetSpacing(tuple(geometry.spacing))
    image.SetDirection(tuple(geometry.direction.reshape(-1)))
    return image


@pytest.mark.parametrize("order", [0, 1])
def test_matches_simpleitk_on_oblique_anisotropic_grids(order):
    rng = np.random.default_rng(3)
    source = Geometry((-30.0, 12.0, -80.0), (0.7, 0.7, 2.5), _tilted(0.3))
    array = rng.normal(size=(20, 40, 40)).astype(np.float32)
    centre = source.irc2xyz([10, 20, 20])
    target = cube_geometry(centre, (16, 16, 16), (1.0, 1.0, 1.0), like=Geometry(direction=_tilted(-0.2)))
    ours = resample_onto(array, source, target, (16, 16, 16), order=order, fill=0.0)

    reference = sitk.Resample(
        _sitk_image(array, source),
        (16, 16, 16),
        sitk.Transform(),
        sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear,
        tuple(target.origin),
        tuple(target.spacing),
        tuple(target.direction.reshape(-1)),
        0.0,
        sitk.sitkFloat32,
    )
    expected = sitk.GetArrayFromImage(reference)
    inside = np.abs(expected) > 0  # both fill 0 outside; compare where SimpleITK sampled the image
    assert inside.mean() > 0.9
    if order == 1:
        np.testing.assert_allclose(ours[inside], expected[inside], atol=1e-4)
    else:  # nearest: ties at exact half-voxels may round differently; nearly all voxels agree
        assert np.mean(np.isclose(ours[inside], expected[inside], atol=1e-5)) > 0.99


def test_cube_is_centred_and_covering_box_holds_it():
    scan = Geometry((0.0, 0.0, 0.0), (0.8, 0.8, 2.0))
    cube = cube_geometry((20.0, 24.0, 30.0), (8, 10, 12), (1.0, 1.0, 1.0), like=scan)
    centre_irc = (np.array([8, 10, 12]) - 1) / 2
    np.testing.assert_allclose(cube.irc2xyz(centre_irc), (20.0, 24.0, 30.0))
    start, size = covering_box(scan, (40, 80, 80), cube, (8, 10, 12))
    corners = cube.irc2xyz([[0, 0, 0], [7, 9, 11]])
    inside = scan.xyz2irc(corners, continuous=True)
    assert np.all(inside >= start) and np.all(inside <= start + size - 1)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize(
    "centre_irc",
    [(10, 20, 20), (0, 0, 39), (19.6, 39.4, 0.2), (-3, 20, 20), (25, -9, 50)],  # inside, edges, off the scan
)
def test_sampling_a_block_equals_sampling_the_whole_volume(order, centre_irc):
    # resample_onto reads only the source block its samples touch: exactly what map_coordinates gives on
    # the whole float volume, at the scan's edges and beyond them too
    from scipy import ndimage

    rng = np.random.default_rng(5)
    source = Geometry((-30.0, 12.0, -80.0), (0.7, 0.7, 2.5), _tilted(0.3))
    array = rng.integers(-1000, 400, size=(20, 40, 40)).astype(np.int16)
    target = cube_geometry(
        source.irc2xyz(centre_irc), (9, 12, 12), (0.9, 0.8, 1.1), like=Geometry(direction=_tilted(-0.2))
    )
    ours = resample_onto(array, source, target, (9, 12, 12), order=order, fill=-1000.0)
    irc = np.indices((9, 12, 12), dtype=np.float64).reshape(3, -1).T
    coords = source.xyz2irc(target.irc2xyz(irc), continuous=True).T
    whole = ndimage.map_coordinates(
        array.astype(np.float32), coords, order=order, mode="constant", cval=-1000.0
    )
    np.testing.assert_array_equal(ours, whole.reshape(9, 12, 12))
