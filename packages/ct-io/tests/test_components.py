"""component_at against hand-made masks: the centre's component, else the nearest, else nothing."""

import numpy as np

from lungtk.ct_io.components import component_at


def _two_blobs():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 1:3, 1:3] = True  # near the origin
    mask[6:9, 6:9, 6:9] = True  # far corner
    return mask


def test_the_component_holding_the_centre():
    mask = _two_blobs()
    got = component_at(mask, (7.2, 6.8, 7.0))
    assert got.sum() == 27 and got[7, 7, 7] and not got[1, 1, 1]


def test_the_nearest_component_when_the_centre_is_outside_every_one():
    mask = _two_blobs()
    assert component_at(mask, (4.0, 4.0, 4.0))[2, 2, 2]  # 2 voxels per axis from the small one
    assert component_at(mask, (5.0, 5.0, 5.2))[6, 6, 6]  # nearer the big one


def test_an_empty_mask_and_a_centre_off_the_grid():
    assert not component_at(np.zeros((4, 4, 4), bool), (1, 1, 1)).any()
    assert component_at(_two_blobs(), (50.0, 50.0, 50.0))[8, 8, 8]  # clipped to the corner voxel
