"""xyz <-> irc checked against SimpleITK's own transforms."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lungtk.core import Geometry

rng = np.random.default_rng(7)

DIRECTIONS = {
    "identity": np.eye(3),
    "flipped": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    "oblique": Rotation.from_euler("xyz", [17, -31, 52], degrees=True).as_matrix(),
    "oblique-flipped": Rotation.from_euler("zyx", [-8, 23, 71], degrees=True).as_matrix()
    @ np.diag([1, -1, 1]),
}


def sitk_image(geometry: Geometry) -> sitk.Image:
    image = sitk.Image(8, 8, 8, sitk.sitkInt16)
    image.SetOrigin(tuple(geometry.origin))
    image.SetSpacing(tuple(geometry.spacing))
    image.SetDirection(tuple(geometry.direction.reshape(-1)))
    return image


@pytest.fixture(params=sorted(DIRECTIONS))
def geometry(request):
    direction = DIRECTIONS[request.param]
    assert not np.allclose(direction, direction.T) or request.param in {"identity", "flipped"}
    return Geometry(np.array([-170.4, 12.25, -301.0]), np.array([0.703, 0.68, 2.5]), direction)


def test_xyz2irc_matches_sitk_continuous_index(geometry):
    image = sitk_image(geometry)
    xyz = rng.uniform(-300, 300, size=(50, 3))
    ours = geometry.xyz2irc(xyz, continuous=True)
    theirs = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in xyz])[:, ::-1]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_nearest_voxel_matches_sitk_index(geometry):
    image = sitk_image(geometry)
    xyz = rng.uniform(-300, 300, size=(200, 3))
    ours = geometry.xyz2irc(xyz)
    theirs = np.array([image.TransformPhysicalPointToIndex(tuple(p)) for p in xyz])[:, ::-1]
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == np.int64


def test_irc2xyz_matches_sitk(geometry):
    image = sitk_image(geometry)
    irc = rng.uniform(-5, 60, size=(50, 3))
    ours = geometry.irc2xyz(irc)
    theirs = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p[::-1])) for p in irc])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_single_point_round_trip(geometry):
    point = np.array([10.0, -20.0, 30.0])
    irc = geometry.xyz2irc(point, continuous=True)
    assert irc.shape == (3,)
    np.testing.assert_allclose(geometry.irc2xyz(irc), point, atol=1e-9)


def test_transposed_inverse_would_be_wrong_for_oblique_directions():
    g = Geometry(np.zeros(3), np.ones(3), DIRECTIONS["oblique"])
    xyz = np.array([[30.0, -10.0, 5.0]])
    book = (xyz @ np.linalg.inv(g.direction))[:, ::-1]  # the widely copied form
    assert not np.allclose(book, g.xyz2irc(xyz, continuous=True))


def test_shifted_geometry_places_subgrid_voxels_at_the_same_point(geometry):
    sub = geometry.shifted([3, 4, 5])
    np.testing.assert_allclose(sub.irc2xyz([1, 1, 1]), geometry.irc2xyz([4, 5, 6]), atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spacing": [1, 0, 1]}, "spacing must be positive"),
        ({"origin": [1, 2]}, "origin must be 3 finite numbers"),
        ({"direction": np.zeros((3, 3))}, "invertible"),
        ({"spacing": [1, 1, 1e-300]}, "spacing must be between"),
        ({"spacing": [1, 1e5, 1]}, "spacing must be between"),
        ({"origin": [1e308, 0, 0]}, "origin must lie within"),
        ({"origin": [0, -2e5, 0]}, "origin must lie within"),
        ({"direction": np.diag([1.0, 1.0, 5.0])}, "unit vectors .* lengths \\(1, 1, 5\\)"),
        ({"direction": np.diag([0.7, 0.7, 2.5])}, "the voxel size belongs in the spacing"),
    ],
)
def test_invalid_geometry_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Geometry(**kwargs)
