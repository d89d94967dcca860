import numpy as np

from lungtk.train.data.targets import grow_piece, paste_pieces


def _ball_scene():
    hu = np.full((40, 40, 40), -850.0)
    zz, yy, xx = np.mgrid[:40, :40, :40]
    ball = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 4**2
    hu[ball] = 40.0
    hu[20, 20, 24:] = 40.0  # a vessel leaving the nodule along the columns
    hu[5:9, 5:9, 5:9] = 40.0  # another dense structure, not connected
    return hu, ball


def test_grown_target_is_the_dense_region_around_the_centre_within_its_diameter():
    hu, ball = _ball_scene()
    piece = grow_piece(hu, (20.2, 19.8, 20.0), diameter_mm=8.0, spacing_irc=(1, 1, 1))
    mask = paste_pieces([piece], (0, 0, 0), hu.shape)
    assert mask[ball].all()
    assert not mask[5:9, 5:9, 5:9].any()
    # the vessel is cut where the diameter box ends
    assert mask[20, 20, 24] and not mask[20, 20, 25:].any()


def test_centre_below_threshold_takes_the_nearest_component():
    hu, ball = _ball_scene()
    hu[20, 20, 20] = -900  # a hole at the centre
    piece = grow_piece(hu, (20, 20, 20), diameter_mm=8.0, spacing_irc=(1, 1, 1))
    assert piece is not None and piece.mask.sum() == ball.sum() - 1  # all but the hole


def test_nothing_dense_gives_no_piece_and_pieces_paste_inside_any_box():
    assert grow_piece(np.full((10, 10, 10), -900.0), (5, 5, 5), 4.0, (1, 1, 1)) is None
    hu, _ = _ball_scene()
    piece = grow_piece(hu, (20, 20, 20), 8.0, (1, 1, 1))
    window = paste_pieces([piece], (18, 18, 18), (4, 4, 4))
    assert window.all()
    assert not paste_pieces([piece], (0, 0, 0), (4, 4, 4)).any()
