"""The report's pictures: the segmenter's uncertainty map is shown beside the mask contour when it gives one."""

from __future__ import annotations

import numpy as np

from lungtk.core import Candidate, Finding, Geometry, NoduleMask
from lungtk.ct_io import CTVolume
from lungtk.ct_io.render import heat
from lungtk.pipeline.report import MAX_ENTROPY, UNCERTAINTY, finding_views


def _finding(with_uncertainty: bool) -> tuple[CTVolume, Finding]:
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    ct = CTVolume(np.full((40, 40, 40), -850, np.int16), geometry, "s")
    grid = np.indices((11, 11, 11)) - 5
    radius = np.sqrt((grid**2).sum(0))
    mask = radius <= 3
    # unsure on a shell around the boundary (radius 3..4), sure elsewhere
    doubt = np.where((radius > 2.5) & (radius < 4.5), MAX_ENTROPY, 0.0).astype(np.float32)
    nodule = NoduleMask(
        mask, geometry.shifted(np.array([15, 15, 15])), uncertainty=doubt if with_uncertainty else None
    )
    return ct, Finding(Candidate((20.0, 20.0, 20.0), 7.0, 0.9), nodule)


def test_the_uncertainty_view_is_the_entropy_map_with_the_mask_outlined():
    ct, finding = _finding(True)
    views = finding_views(ct, finding, size_px=64)
    assert set(views) == {"axial", "coronal", "sagittal", UNCERTAINTY}
    image = views[UNCERTAINTY]
    assert image.dtype == np.uint8 and image.shape[2] == 3
    white = (image == 255).all(axis=2).sum()  # entropy ln 2: white
    blue = (image == (64, 160, 255)).all(axis=2).sum()  # the mask's contour
    black = (image == 0).all(axis=2).sum()  # entropy 0: black
    assert white > 0 and blue > 0 and black > white


def test_no_uncertainty_view_without_a_map():
    ct, finding = _finding(False)
    assert set(finding_views(ct, finding, size_px=64)) == {"axial", "coronal", "sagittal"}


def test_heat_runs_black_red_yellow_white():
    colours = heat(np.array([0.0, 1 / 3, 2 / 3, 1.0, 2.0]), 1.0)
    assert colours.tolist() == [[0, 0, 0], [255, 0, 0], [255, 255, 0], [255, 255, 255], [255, 255, 255]]
