"""The learned components' geometry, with oracle networks (a fixed HU threshold) in place of trained
ones: what comes back must be the true ball in the scan's own grid, whatever the model's spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungtk.core import Candidate, Geometry, LungtkError, RunOptions
from lungtk.core.labels import TEXTURES
from lungtk.ct_io import CTVolume
from lungtk.seg.grouping import GroupingRule
from lungtk.seg.learned import CubeSegmenter
from lungtk.seg.slice_detector import SliceDetector, slab_indices
from lungtk.train.inputs import InputSpec

SPACING = np.array([0.7, 0.7, 1.5])  # x, y, z


def _scan(centres_mm, radius_mm=5.0, shape=(40, 96, 96)):
    geometry = Geometry((-30.0, 20.0, -100.0), SPACING)
    irc = np.indices(shape).reshape(3, -1).T
    xyz = geometry.irc2xyz(irc)
    inside = np.zeros(len(irc), bool)
    for c in centres_mm:
        inside |= np.linalg.norm(xyz - np.asarray(c), axis=1) <= radius_mm
    truth = inside.reshape(shape)
    return CTVolume(np.where(truth, 40, -850).astype(np.int16), geometry, "s"), truth


class Threshold(torch.nn.Module):
    """Logits of ``window(HU) > level``; with ``texture`` also constant texture logits."""

    def __init__(self, level: float, texture: bool = False, channel: int | None = None) -> None:
        super().__init__()
        self.level, self.texture, self.channel = level, texture, channel
        self.divisor = 1

    def forward(self, x):
        x = x if self.channel is None else x[:, self.channel : self.channel + 1]
        logits = 40.0 * (x - self.level)
        if self.texture:
            return logits, torch.tensor([[0.0, 1.0, 3.0]]).expand(len(x), 3)
        return logits


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("tta", [False, True])
def test_cube_segmenter_returns_the_ball_in_the_scans_grid(tta):
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -100 + 20 * 1.5)
    ct, truth = _scan([centre])
    # window -1000..400 -> [0, 1]: lung 0.107, nodule 0.743; the oracle cuts at 0.45 (about -370 HU)
    segmenter = CubeSegmenter(
        Threshold(0.45, texture=True), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"), tta=tta
    )
    (mask,) = segmenter.segment(ct, [Candidate(centre, 10.0, 1.0)])
    assert mask.geometry.spacing.tolist() == SPACING.tolist()  # the scan's grid, not the model's
    full = np.zeros(ct.shape, bool)
    start = mask.start_in(ct.geometry)
    full[tuple(slice(s, s + n) for s, n in zip(start, mask.mask.shape, strict=True))] = mask.mask
    assert _dice(full, truth) > 0.9
    assert abs(mask.volume_mm3 - truth.sum() * ct.geometry.voxel_volume) / (truth.sum() * 0.735) < 0.1
    assert list(mask.texture) == list(TEXTURES)
    np.testing.assert_allclose(list(mask.texture.values()), torch.softmax(torch.tensor([0.0, 1, 3]), 0))
    if not tta:
        assert mask.uncertainty is None
        return
    # the entropy map: on the mask's grid, sure (about 0) at the ball's centre and far outside, unsure only
    # where interpolated voxels straddle the boundary; never above ln 2
    doubt = mask.uncertainty
    assert doubt.shape == mask.mask.shape and doubt.max() <= np.log(2) + 1e-6
    inside = np.zeros(ct.shape, bool)
    inside[tuple(slice(s, s + n) for s, n in zip(start, mask.mask.shape, strict=True))] = True
    grid = np.zeros(ct.shape, np.float32)
    grid[inside] = doubt.ravel()
    centre_irc = np.round(ct.geometry.xyz2irc(centre, continuous=True)).astype(int)
    assert grid[tuple(centre_irc)] < 1e-3
    boundary = truth ^ ndimage.binary_erosion(truth)
    assert (
        grid[boundary].mean()
        > 10 * grid[inside & ~truth & ~ndimage.binary_dilation(truth, iterations=3)].mean()
    )


def test_a_nodule_larger_than_the_patch_is_segmented_whole_in_a_zoomed_out_cube():
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -100 + 20 * 1.5)
    ct, truth = _scan([centre], radius_mm=20.0)  # 40 mm across; the patch holds 32 x 0.8 = 25.6 mm
    segmenter = CubeSegmenter(Threshold(0.45), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"))
    (whole,) = segmenter.segment(ct, [Candidate(centre, 40.0, 1.0)])
    (cut,) = segmenter.segment(ct, [Candidate(centre, 10.0, 1.0)])  # a diameter the patch holds: no zoom

    def on_scan(mask):
        full = np.zeros(ct.shape, bool)
        start = mask.start_in(ct.geometry)
        full[tuple(slice(s, s + n) for s, n in zip(start, mask.mask.shape, strict=True))] = mask.mask
        return full

    assert _dice(on_scan(whole), truth) > 0.9
    assert _dice(on_scan(cut), truth) < 0.85  # the patch's own field of view truncates the ball
    assert whole.mask.shape[2] * SPACING[0] > 40.0  # the zoomed cube reaches past the ball


def test_a_small_nodule_is_segmented_in_a_zoomed_in_cube():
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -100 + 20 * 1.5)
    ct, truth = _scan([centre], radius_mm=3.0)
    spec = InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400")
    zooming = CubeSegmenter(Threshold(0.45), spec, min_voxels=12)

    def spacing(diameter_mm, segmenter=zooming):
        return segmenter._cube_for(Candidate(centre, diameter_mm, 1.0), ct.geometry).spacing.tolist()

    assert spacing(6.0) == pytest.approx([0.5, 0.5, 0.5])  # 6 mm across 12 voxels
    assert spacing(2.0) == pytest.approx([0.4, 0.4, 0.4])  # at most 2x finer
    assert spacing(9.6) == pytest.approx([0.8, 0.8, 0.8])  # wide enough: the model's own spacing
    assert spacing(12.0) == pytest.approx([0.8, 0.8, 0.8])
    assert spacing(0.0) == pytest.approx([0.8, 0.8, 0.8])  # no diameter, no zoom
    assert spacing(40.0) == pytest.approx([0.8 * 58 / 25.6] * 3)  # zoomed out: 1.25 x 40 mm + 2 x 4 mm
    assert spacing(6.0, CubeSegmenter(Threshold(0.45), spec)) == pytest.approx([0.8, 0.8, 0.8])  # off
    (mask,) = zooming.segment(ct, [Candidate(centre, 6.0, 1.0)])
    assert mask.geometry.spacing.tolist() == SPACING.tolist()
    full = np.zeros(ct.shape, bool)
    start = mask.start_in(ct.geometry)
    full[tuple(slice(s, s + n) for s, n in zip(start, mask.mask.shape, strict=True))] = mask.mask
    assert _dice(full, truth) > 0.9


def test_min_voxels_is_checked_where_it_enters(tmp_path):
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(b"")
    for bad in (-1.0, 100.0):
        with pytest.raises(LungtkError, match="resunet.min_voxels"):
            CubeSegmenter.load(RunOptions(weights=weights, settings={"min_voxels": bad}), "resunet")


def test_tta_gives_each_candidate_the_same_result_in_a_batch_as_alone():
    a, b = (-30 + 30 * 0.7, 20 + 48 * 0.7, -70.0), (-30 + 66 * 0.7, 20 + 40 * 0.7, -85.0)
    ct, _ = _scan([a, b], radius_mm=4.0)
    segmenter = CubeSegmenter(
        Threshold(0.45), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"), tta=True
    )
    together = segmenter.segment(ct, [Candidate(a, 8.0, 1.0), Candidate(b, 8.0, 1.0)])
    alone = [segmenter.segment(ct, [Candidate(c, 8.0, 1.0)])[0] for c in (a, b)]
    for x, y in zip(together, alone, strict=True):
        np.testing.assert_array_equal(x.mask, y.mask)
        np.testing.assert_allclose(x.uncertainty, y.uncertainty, atol=1e-6)


def test_cube_segmenter_keeps_the_component_at_the_centre():
    a, b = (-30 + 30 * 0.7, 20 + 48 * 0.7, -70.0), (-30 + 46 * 0.7, 20 + 48 * 0.7, -70.0)  # 11.2 mm apart
    ct, _ = _scan([a, b], radius_mm=4.0)
    segmenter = CubeSegmenter(Threshold(0.45), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"))
    (mask,) = segmenter.segment(ct, [Candidate(a, 8.0, 1.0)])
    centroid = np.array(mask.centroid_xyz)
    assert np.linalg.norm(centroid - np.array(a)) < 1.0  # the other ball, also in the cube, is dropped


def test_the_radius_limit_cuts_what_leaks_beyond_the_candidate():
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -70.0)
    ct, ball = _scan([centre], radius_mm=3.0)
    hu = np.asarray(ct.array).copy()
    hu[20, 48, 48:] = 40  # a vessel leaving the nodule along +x, one voxel thick
    hu[20, 47:50, 48:] = 40
    ct = CTVolume(hu, ct.geometry, "s")
    segmenter = CubeSegmenter(Threshold(0.45), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"))
    (leaky,) = segmenter.segment(ct, [Candidate(centre, 6.0, 1.0)])
    segmenter.radius_factor = 1.6
    (limited,) = segmenter.segment(ct, [Candidate(centre, 6.0, 1.0)])

    def reach(mask):  # the farthest mask voxel from the centre, mm
        xyz = mask.geometry.irc2xyz(np.argwhere(mask.mask))
        return np.linalg.norm(xyz - np.array(centre), axis=1).max()

    assert reach(leaky) > 10.0  # without the limit the vessel is followed to the cube's edge
    assert reach(limited) <= 1.6 * 3.0 + 1e-6 and limited.volume_mm3 < leaky.volume_mm3
    assert limited.volume_mm3 >= 0.8 * ball.sum() * ct.geometry.voxel_volume  # the ball itself is kept


def test_the_opening_cuts_a_vessel_but_does_not_erase_a_nodule_thinner_than_its_ball():
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -70.0)
    segmenter = CubeSegmenter(
        Threshold(0.45), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"), opening_mm=1.6
    )
    ct, _ = _scan([centre], radius_mm=1.5)  # no 1.6 mm ball fits inside it
    (small,) = segmenter.segment(ct, [Candidate(centre, 3.0, 1.0)])
    segmenter.opening_mm = 0.0
    (unopened,) = segmenter.segment(ct, [Candidate(centre, 3.0, 1.0)])
    segmenter.opening_mm = 1.6
    assert small.mask.any() and np.array_equal(small.mask, unopened.mask)
    ct, _ = _scan([centre], radius_mm=4.0)
    hu = np.asarray(ct.array).copy()
    hu[20, 47:50, 48:] = 40  # a vessel 2.1 x 1.5 mm leaving the nodule along +x
    vessel = CTVolume(hu, ct.geometry, "s")

    def reach(candidate_xyz, opening_mm):
        segmenter.opening_mm = opening_mm
        (mask,) = segmenter.segment(vessel, [Candidate(candidate_xyz, 8.0, 1.0)])
        return np.linalg.norm(mask.geometry.irc2xyz(np.argwhere(mask.mask)) - np.array(centre), axis=1).max()

    assert reach(centre, 0.0) > 10.0  # unopened, the vessel is followed
    assert reach(centre, 1.6) < 6.0  # opened, it is cut off
    off_centre = (centre[0], centre[1] + 5.0, centre[2])  # a centre outside the mask: still opened
    assert reach(off_centre, 1.6) < 6.0


class MaskedTexture(Threshold):
    """An oracle with a nodule-reading head (``texture_pool="mask"``): solid when the mean windowed
    intensity under the mask is above 0.5, ground glass below."""

    texture_pool = "mask"

    def __init__(self, level: float) -> None:
        super().__init__(level)

    def forward(self, x):
        return super().forward(x), self.texture_logits(x, torch.sigmoid(super().forward(x)))

    def texture_logits(self, x, mask):
        mean = (x * mask).sum((2, 3, 4)) / mask.sum((2, 3, 4)).clamp_min(1e-6)
        return torch.cat([20 * (0.5 - mean), torch.zeros_like(mean), 20 * (mean - 0.5)], dim=1)


@pytest.mark.parametrize("min_voxels", [0, 12])
def test_a_nodule_reading_head_reads_the_nodule_at_the_candidate_not_its_neighbours(min_voxels):
    faint, bright = (-30 + 40 * 0.7, 20 + 48 * 0.7, -70.0), (-30 + 52 * 0.7, 20 + 48 * 0.7, -70.0)
    ct, _ = _scan([faint, bright], radius_mm=3.0)  # 8.4 mm apart: both in either one's cube
    hu = np.asarray(ct.array).copy()
    geometry = ct.geometry
    irc = np.indices(hu.shape).reshape(3, -1).T
    near_faint = np.linalg.norm(geometry.irc2xyz(irc) - np.asarray(faint), axis=1) <= 3.0
    hu[near_faint.reshape(hu.shape)] = -600  # ground glass (window 0.29); the other ball stays solid (0.74)
    ct = CTVolume(hu, geometry, "s")
    segmenter = CubeSegmenter(
        MaskedTexture(0.2), InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400"), min_voxels=min_voxels
    )
    on_faint, on_bright = segmenter.segment(ct, [Candidate(faint, 6.0, 1.0), Candidate(bright, 6.0, 1.0)])
    assert max(on_faint.texture, key=on_faint.texture.get) == "ground-glass"
    assert max(on_bright.texture, key=on_bright.texture.get) == "solid"


def test_slabs_are_clamped_at_the_ends():
    assert slab_indices(np.array([0, 5]), 7, 6).tolist() == [[0, 0, 0, 0, 1, 2, 3], [2, 3, 4, 5, 5, 5, 5]]


def test_slice_detector_finds_each_ball_at_its_centre():
    centres = [
        (-30 + 30 * 0.7, 20 + 30 * 0.7, -100 + 12 * 1.5),
        (-30 + 70 * 0.7, 20 + 60 * 0.7, -100 + 28 * 1.5),
    ]
    ct, _ = _scan(centres, radius_mm=4.0)
    # window "luna" clips to [-1000, 1000] HU (no rescale): cut the centre slice at -400 HU
    detector = SliceDetector(
        Threshold(-400.0, channel=3), (0.8, 0.8, 1.5), 7, "luna", GroupingRule(erosion=1)
    )
    found = detector.detect(ct)
    assert len(found) == 2
    for c in centres:
        nearest = min(found, key=lambda f: np.linalg.norm(np.subtract(f.center_xyz, c)))
        assert np.linalg.norm(np.subtract(nearest.center_xyz, c)) < 1.0
        assert nearest.diameter_mm == pytest.approx(8.0, abs=1.2)
        assert nearest.probability == pytest.approx(1.0)


class FractionTexture(Threshold):
    """A bottleneck-like head that depends on the scale: its logits grow with the fraction of the cube
    above the level (a ball fills more of a zoomed-in cube)."""

    def forward(self, x):
        logits = super().forward(x)
        fraction = (logits > 0).float().mean((2, 3, 4))
        return logits, torch.cat([torch.zeros_like(fraction), torch.zeros_like(fraction), 50 * fraction], 1)


def test_a_bottleneck_head_reads_the_cube_without_the_zoom_for_small_nodules():
    centre = (-30 + 48 * 0.7, 20 + 48 * 0.7, -100 + 20 * 1.5)
    ct, _ = _scan([centre], radius_mm=3.0)
    spec = InputSpec((32, 32, 32), (0.8, 0.8, 0.8), "-1000,400")
    candidate = Candidate(centre, 6.0, 1.0)
    zooming = CubeSegmenter(FractionTexture(0.45), spec, min_voxels=12)
    (zoomed,) = zooming.segment(ct, [candidate])
    (plain,) = CubeSegmenter(FractionTexture(0.45), spec).segment(ct, [candidate])
    np.testing.assert_allclose(list(zoomed.texture.values()), list(plain.texture.values()), rtol=1e-5)
    # ... which differs from what the head gives on the zoomed-in cube itself
    cube = zooming._cube_for(candidate, ct.geometry)
    _, on_zoomed = FractionTexture(0.45)(
        torch.from_numpy(spec.sample(np.asarray(ct.array), ct.geometry, [cube]))
    )
    assert torch.softmax(on_zoomed, 1)[0, 2] > plain.texture["solid"] + 0.1
