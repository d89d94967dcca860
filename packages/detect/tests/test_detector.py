"""The NoduleNet component over whole scans: tiles, ownership, NMS and the way back to patient millimetres
(with a synthetic network that finds a bright ball, on a scan with anisotropic voxels, an origin and a
flipped axis), its masks for the segmenter role, and a real tiny model file through the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungtk.core import Candidate, Geometry, LungtkError, RunOptions, get_registry
from lungtk.ct_io import CTVolume
from lungtk.detect.detector import NoduleNetDetector
from lungtk.detect.nodulenet import Detections, NoduleNet
from lungtk.detect.roi import mask_windows
from lungtk.detect.tiles import TileGrid
from lungtk.detect.tta import FLIPS, fuse_passes
from lungtk.train.modelfile import save_model

SPACING = (0.7, 0.8, 1.5)  # x, y, z mm
ORIGIN = (-120.5, 35.2, -310.0)
BALL_MM = 8.0


class BrightBallNet:
    """Stands in for NoduleNet: a detection per bright blob that does not touch the tile's faces (a real
    network is unsure of a cut nodule), its mask the blob itself."""

    def __init__(self) -> None:
        self.segment_calls = 0

    def _blobs(self, patch: torch.Tensor) -> list[torch.Tensor]:
        bright = patch[0].numpy() > 150  # the nodulenet window: 100 HU -> 184, lung -> 56
        labels, _ = ndimage.label(bright)
        cubes = []
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            if any(s.start == 0 or s.stop == n for s, n in zip(box, bright.shape, strict=True)):
                continue
            centre = ndimage.center_of_mass(labels == i)
            side = max(s.stop - s.start for s in box)
            cubes.append(torch.tensor([*centre, float(side)]))
        return cubes

    def detect(self, x, *, threshold, nms_iou, max_keep, with_masks, keep=None):
        out = []
        for b, patch in enumerate(x):
            cubes = self._blobs(patch)
            boxes = torch.stack(cubes) if cubes else torch.zeros(0, 4)
            if keep is not None:
                boxes = boxes[keep(b, boxes)]
            scores = torch.full((len(boxes),), 0.9)
            d = Detections(boxes, scores, scores, scores)
            if with_masks:
                d.masks = self._masks(patch, boxes)
            out.append(d)
        return out

    def _masks(self, patch, boxes):
        rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
        windows = mask_windows(rois, patch.shape[1:])
        out = []
        for w in windows.tolist():
            z0, y0, x0, z1, y1, x1 = w[1:]
            out.append((tuple(w[1:]), (patch[0, z0:z1, y0:y1, x0:x1] > 150).float()))
        return out

    def segment(self, x, rois):
        self.segment_calls += 1
        return self._masks(x[0], rois[:, 1:])


def _scan(direction=None, shape=(40, 90, 100)) -> tuple[CTVolume, np.ndarray]:
    """A lung-density box (index z, row y, col x) with a solid ball of BALL_MM; the ball's centre (mm)."""
    geometry = Geometry(ORIGIN, SPACING, np.eye(3) if direction is None else direction)
    rng = np.random.default_rng(0)
    hu = np.full(shape, -800.0, np.float32) + rng.normal(0, 10, shape).astype(np.float32)
    centre_irc = np.array([0.53, 0.53, 0.38]) * np.asarray(shape)
    ball_xyz = geometry.irc2xyz(centre_irc)
    irc = np.indices(shape).reshape(3, -1).T
    inside = np.linalg.norm(geometry.irc2xyz(irc) - ball_xyz, axis=1) <= BALL_MM / 2
    hu.reshape(-1)[inside] = 100.0
    return CTVolume(hu, geometry, "1.2.3"), ball_xyz


def _detector(**kw) -> tuple[NoduleNetDetector, BrightBallNet]:
    net = BrightBallNet()
    return NoduleNetDetector(net, (1.0, 1.0, 1.0), "nodulenet", **{"tile": 32, "overlap": 16, **kw}), net


@pytest.mark.parametrize("tta", [False, True], ids=["one-pass", "tta"])
@pytest.mark.parametrize("direction", [np.eye(3), np.diag([1.0, -1.0, 1.0])], ids=["identity", "flipped-y"])
def test_a_ball_is_found_once_at_its_patient_position(direction, tta):
    ct, ball_xyz = _scan(direction)
    detector, net = _detector(tta=tta)
    found = detector.detect(ct)
    assert len(found) == 1  # seen whole by several overlapping tiles, kept by the one that owns it
    c = found[0]
    assert np.linalg.norm(np.subtract(c.center_xyz, ball_xyz)) < min(SPACING)  # within a voxel
    assert BALL_MM - 1 <= c.diameter_mm <= BALL_MM + 2 and c.probability == pytest.approx(0.9)
    box = np.asarray(c.box_mm)
    assert np.all(box[:3] <= ball_xyz) and np.all(ball_xyz <= box[3:])
    assert c.source == "nodulenet"

    # the segmenter role: the detection's own mask, no second pass
    (mask,) = detector.segment(ct, found)
    assert net.segment_calls == 0
    volume = 4 / 3 * np.pi * (BALL_MM / 2) ** 3
    assert mask.volume_mm3 == pytest.approx(volume, rel=0.3)
    voxels = np.argwhere(mask.mask) + mask.start_in(ct.geometry)
    assert np.linalg.norm(ct.geometry.irc2xyz(voxels).mean(axis=0) - ball_xyz) < 1.0
    # another detector's candidate: the mask head on a cube around it
    (alone,) = detector.segment(ct, [Candidate(tuple(ball_xyz + 0.3), 9.0, 0.5)])
    assert net.segment_calls == 1 and alone.volume_mm3 == pytest.approx(volume, rel=0.3)


@pytest.mark.parametrize("flip", (*FLIPS[1:], (0, 1, 2)))
def test_a_flipped_pass_maps_its_cubes_and_masks_back_onto_the_scan(flip):
    ct, _ = _scan(shape=(40, 70, 60))
    detector, _ = _detector()
    hu = np.asarray(ct.array)
    cubes, scores, masks = detector._pass(hu)
    flipped_cubes, flipped_scores, flipped_masks = detector._pass(np.flip(hu, flip), flip)
    torch.testing.assert_close(flipped_cubes, cubes, atol=1e-4, rtol=0)
    torch.testing.assert_close(flipped_scores, scores)

    def placed(found):
        start, prob = found
        out = np.zeros(hu.shape, np.float32)
        out[tuple(slice(a, a + n) for a, n in zip(start, prob.shape, strict=True))] = prob.numpy()
        return out

    for plain, mirrored in zip(masks, flipped_masks, strict=True):
        np.testing.assert_array_equal(placed(mirrored), placed(plain))


def test_fusing_passes_averages_each_nodule_over_all_passes():
    nodule = [torch.tensor([[20.0, 30.0, 40.0, 8.0]]) + d for d in (0.0, 0.4, -0.4, 0.2)]
    scores = [torch.tensor([s]) for s in (0.9, 0.8, 0.7, 0.6)]
    spurious = torch.tensor([[60.0, 10.0, 10.0, 6.0]])  # one pass only, its best score
    cubes, fused, heads = fuse_passes(
        [torch.cat([nodule[0], spurious]), *nodule[1:]],
        [torch.cat([scores[0], torch.tensor([0.95])]), *scores[1:]],
        iou=0.1,
    )
    assert fused.tolist() == pytest.approx([0.75, 0.95 / 4])
    weights = torch.tensor([0.9, 0.8, 0.7, 0.6])
    expected = (torch.cat(nodule) * weights[:, None]).sum(0) / weights.sum()
    torch.testing.assert_close(cubes[0], expected)
    torch.testing.assert_close(cubes[1], spurious[0])
    assert heads == [(0, 0), (0, 1)]  # each cluster's best member: its mask stands for the cluster
    two = fuse_passes([nodule[0], nodule[0] + torch.tensor([0.0, 0, 30, 0])], scores[:2], iou=0.1)[1]
    assert two.tolist() == pytest.approx([0.45, 0.4])  # apart: two findings, each seen by one pass of two
    assert fuse_passes([torch.zeros(0, 4)] * 4, [torch.zeros(0)] * 4, iou=0.1)[0].shape == (0, 4)


def test_the_tiles_cover_the_scan_and_each_point_has_one_owner():
    grid = TileGrid.cover((60, 72, 20), (32, 32, 32), 16)
    assert grid.starts == ((0, 16, 28), (0, 16, 32, 40), (0,))
    assert len(grid) == 12 and len(list(grid)) == 12
    points = np.array([[0.0, 0, 0], [23.6, 30, 5], [59, 71, 19]])
    assert grid.owner(points).tolist() == [[0, 0, 0], [1, 1, 0], [2, 3, 0]]


def test_nothing_found_gives_no_candidates_and_no_masks():
    ct, _ = _scan()
    quiet = CTVolume(np.full(ct.shape, -800.0, np.float32), ct.geometry, "quiet")
    detector, _ = _detector()
    assert detector.detect(quiet) == []
    assert detector.segment(quiet, []) == []


def test_bad_settings_are_one_line_errors():
    for kw, match in (
        ({"tile": 40}, "tile=40"),
        ({"overlap": 32}, "overlap=32"),
        ({"nms_iou": 1.5}, "nms_iou=1.5"),
        ({"max_candidates": 0}, "max_candidates=0"),
        ({"tile_batch": 0}, "tile_batch=0"),
    ):
        with pytest.raises(LungtkError, match=match) as error:
            _detector(**kw)
        assert "\n" not in str(error.value)


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    model = NoduleNet(width=0.125)
    return save_model(
        tmp_path / "nodulenet.safetensors",
        model,
        architecture="nodulenet",
        arch_args={
            "width": 0.125,
            "attention": "none",
            "anchors": [5, 10, 20, 30, 50],
            "input_range": [0, 255],
        },
        preprocessing={"spacing": [1.0, 1.0, 1.0], "patch": [32, 32, 32], "window": "nodulenet"},
        task="nodulenet",
    )


def test_a_model_file_runs_through_the_registry_in_both_roles(model_file):
    registry = get_registry()
    options = RunOptions(weights=model_file)
    settings = {"tile": 32, "overlap": 8, "rpn_threshold": 0.0, "max_candidates": 5}
    detector = registry.get("detector", "nodulenet").create(options, settings)
    segmenter = registry.get("segmenter", "nodulenet").create(options, settings)
    assert segmenter is detector  # one instance for both roles: the segmenter has the detector's masks
    assert registry.get("detector", "nodulenet").create(options, {**settings, "tile": 64}) is not detector
    ct, _ = _scan(shape=(24, 40, 40))  # two 32^3 tiles at 1 mm
    found = detector.detect(ct)
    assert 1 <= len(found) <= 5 and all(isinstance(c, Candidate) for c in found)
    assert all(ct.contains_irc(ct.xyz2irc(c.center_xyz, continuous=True)) for c in found)
    masks = segmenter.segment(ct, found[:2])
    assert len(masks) == 2 and all(m.mask.ndim == 3 for m in masks)


def test_the_component_needs_a_fitting_model_file(model_file):
    registry = get_registry()
    with pytest.raises(LungtkError, match="--weights nodulenet-cbam=FILE"):  # ships no weights
        registry.get("detector", "nodulenet-cbam").create(RunOptions())
    with pytest.raises(LungtkError, match="attention=qam"):
        registry.get("detector", "nodulenet-qam").create(RunOptions(weights=model_file))
    with pytest.raises(LungtkError, match="tile=40"):
        registry.get("detector", "nodulenet").create(RunOptions(weights=model_file), {"tile": 40})
