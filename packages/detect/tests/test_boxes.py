"""NoduleNet's box machinery against brute-force references: 3D IoU, greedy NMS, the box encoding, the
anchors and their assignment, ROI crops and mask windows, true boxes from a mask, RCNN sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lungtk.detect.anchors import IGNORED, NEGATIVE, POSITIVE, anchor_grid, assign_anchors
from lungtk.detect.boxes import as_boxes, box_iou, clip_centres, decode, encode, nms
from lungtk.detect.roi import mask_windows, roi_crop
from lungtk.detect.targets import RcnnSampling, boxes_from_mask, sample_rcnn_rois, truth_boxes


def _iou_reference(a: np.ndarray, b: np.ndarray) -> float:
    """One pair of (z, y, x, d, h, w) boxes, axis by axis."""
    inter = 1.0
    for k in range(3):
        lo = max(a[k] - a[k + 3] / 2, b[k] - b[k + 3] / 2)
        hi = min(a[k] + a[k + 3] / 2, b[k] + b[k + 3] / 2)
        inter *= max(0.0, hi - lo)
    union = np.prod(a[3:]) + np.prod(b[3:]) - inter
    return inter / union


def _nms_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Take the best remaining box, drop what overlaps it, repeat."""
    left = list(np.argsort(-scores, kind="stable"))
    kept = []
    while left:
        best = left.pop(0)
        kept.append(int(best))
        left = [i for i in left if _iou_reference(boxes[best], boxes[i]) <= threshold]
    return kept


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.concatenate([rng.uniform(0, 20, (n, 3)), rng.uniform(1, 10, (n, 3))], axis=1)


def test_iou_matches_a_pairwise_reference_and_cubes_mean_equal_sides():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    got = box_iou(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    want = np.array([[_iou_reference(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (want > 0).sum() > 20  # the random boxes do overlap
    cubes = torch.tensor([[5.0, 5.0, 5.0, 4.0], [6.0, 5.0, 5.0, 4.0]])
    assert torch.equal(as_boxes(cubes)[0], torch.tensor([5.0, 5, 5, 4, 4, 4]))
    assert float(box_iou(cubes, cubes)[0, 1]) == pytest.approx(3 / 5)  # 3x4x4 shared of 2 * 64 - 48
    assert float(box_iou(cubes[:1], torch.tensor([[50.0, 50, 50, 4]]))[0, 0]) == 0.0


def test_iou_of_voxel_aligned_boxes_counts_their_voxels():
    """Boxes on the voxel grid: IoU is the count of shared voxels over the union's."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        masks, boxes = [], []
        for _ in range(2):
            lo = rng.integers(0, 8, 3)
            size = rng.integers(2, 8, 3)
            m = np.zeros((16, 16, 16), bool)
            m[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]] = True
            masks.append(m)
            boxes.append([*(lo + (size - 1) / 2), *size])
        want = (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum()
        assert float(box_iou(torch.tensor(boxes[:1]), torch.tensor(boxes[1:]))[0, 0]) == pytest.approx(want)


def test_nms_matches_the_greedy_reference():
    rng = np.random.default_rng(2)
    for threshold in (0.0, 0.1, 0.5):
        boxes = _random_boxes(rng, 60)
        scores = rng.random(60)
        got = nms(torch.as_tensor(boxes), torch.as_tensor(scores), threshold).tolist()
        assert got == _nms_reference(boxes, scores, threshold)
    kept = nms(torch.as_tensor(boxes), torch.as_tensor(scores), 0.5, max_keep=3)
    assert kept.tolist() == _nms_reference(boxes, scores, 0.5)[:3]
    assert len(nms(torch.zeros(0, 4), torch.zeros(0), 0.1)) == 0


def test_encode_and_decode_are_inverse():
    rng = np.random.default_rng(3)
    anchors = torch.as_tensor(np.concatenate([rng.uniform(0, 64, (50, 3)), rng.uniform(5, 50, (50, 1))], 1))
    targets = torch.as_tensor(np.concatenate([rng.uniform(0, 64, (50, 3)), rng.uniform(3, 40, (50, 1))], 1))
    deltas = encode(anchors, targets)
    torch.testing.assert_close(decode(anchors, deltas), targets)
    # NoduleNet's form: offset over the anchor's side, log of the size ratio
    one = encode(torch.tensor([[10.0, 10, 10, 10]]), torch.tensor([[12.0, 9, 10, 20]]))
    torch.testing.assert_close(one, torch.tensor([[0.2, -0.1, 0.0, float(np.log(2))]]))
    assert torch.isfinite(decode(anchors[:1], torch.tensor([[0.0, 0, 0, 1e4]]))).all()  # clamped
    clipped = clip_centres(torch.tensor([[-3.0, 5.0, 40.0, 8.0]]), (32, 32, 32))
    assert clipped.tolist() == [[0.0, 5.0, 31.0, 8.0]]


def test_anchors_sit_at_the_stride_centres_in_head_order():
    grid = anchor_grid((2, 3, 4), (5.0, 10.0), stride=4)
    assert grid.shape == (2 * 3 * 4 * 2, 4)
    assert grid[0].tolist() == [1.5, 1.5, 1.5, 5.0] and grid[1].tolist() == [1.5, 1.5, 1.5, 10.0]
    assert grid[2].tolist() == [1.5, 1.5, 5.5, 5.0]  # x moves fastest, then y, then z
    assert grid[-1].tolist() == [5.5, 9.5, 13.5, 10.0]


def test_anchor_assignment_on_hand_cases():
    anchors = torch.tensor(
        [
            [10.0, 10, 10, 10],  # the nodule itself
            [11.0, 10, 10, 10],  # IoU 0.82: positive
            [14.0, 10, 10, 10],  # IoU 0.43: ignored
            [30.0, 30, 30, 10],  # far: negative
            [10.0, 10, 10, 50],  # contains it, IoU 0.008: negative
        ]
    )
    truth = torch.tensor([[10.0, 10, 10, 10]])
    a = assign_anchors(anchors, truth, 0.5, 0.02)
    assert a.label.tolist() == [POSITIVE, POSITIVE, IGNORED, NEGATIVE, NEGATIVE]
    assert a.matched.tolist() == [0, 0, -1, -1, -1]
    # a nodule that no anchor fits at IoU 0.5 still gets its best anchor
    b = assign_anchors(anchors, torch.tensor([[30.0, 30, 30, 3]]), 0.5, 0.02)
    assert b.label[3] == POSITIVE and b.matched[3] == 0 and (b.label == POSITIVE).sum() == 1
    assert (assign_anchors(anchors, torch.zeros(0, 4)).label == NEGATIVE).all()


def test_roi_crop_pools_the_region_of_the_feature_map():
    features = torch.zeros(2, 3, 8, 8, 8)
    features[1, :, 2, 3, 4] = 7.0  # a peak at feature voxel (2, 3, 4) of patch 1
    rois = torch.tensor([[1.0, 10.0, 14.0, 18.0, 8.0], [0.0, 10.0, 14.0, 18.0, 8.0], [1.0, 30.0, 30, 30, 4]])
    crops = roi_crop(features, rois, stride=4, size=7)
    assert crops.shape == (3, 3, 7, 7, 7)
    assert float(crops[0].max()) == 7.0 and float(crops[1].max()) == 0.0 and float(crops[2].max()) == 0.0
    assert roi_crop(features, torch.zeros(0, 5), 4).shape == (0, 3, 7, 7, 7)


def test_mask_windows_are_multiples_of_four_inside_the_input():
    rois = torch.tensor(
        [[0.0, 10.0, 10.0, 10.0, 6.0], [1.0, 1.0, 30.0, 15.0, 12.0], [0.0, 5.0, 5.0, 5.0, 0.5]]
    )
    w = mask_windows(rois, (32, 32, 32))
    assert (w[:, 1:] % 4 == 0).all() and (w[:, 1:4] >= 0).all() and (w[:, 4:] <= 32).all()
    assert ((w[:, 4:] - w[:, 1:4]) >= 4).all()
    assert w[0].tolist() == [0, 4, 4, 4, 16, 16, 16]  # voxels 7..13 widened to 4..15
    assert w[1, 0] == 1 and w[1, 1] == 0 and w[1, 5] == 32  # clipped at the input's faces


def test_true_boxes_are_the_mask_components():
    mask = np.zeros((32, 32, 32), np.uint8)
    zz, yy, xx = np.indices(mask.shape)
    mask[(zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 14) ** 2 <= 16] = 1  # a ball of diameter 9 voxels
    mask[20:23, 3:9, 25:27] = 1  # a 3 x 6 x 2 box
    mask[30, 30, 30] = 1  # one voxel
    cubes = boxes_from_mask(mask)
    assert sorted(map(tuple, cubes.tolist())) == [
        (10.0, 12.0, 14.0, 9.0),
        (21.0, 5.5, 25.5, 6.0),
        (30, 30, 30, 1),
    ]
    assert len(boxes_from_mask(mask, min_voxels=2)) == 2
    batch = torch.from_numpy(np.stack([mask, np.zeros_like(mask)])[:, None]).float()
    assert [len(t) for t in truth_boxes(batch)] == [3, 0]


def test_rcnn_regions_are_balanced_foreground_and_background():
    truth = [torch.tensor([[16.0, 16, 16, 10]]), torch.zeros(0, 4)]
    near = torch.tensor([[0.9, 16.5, 16, 16, 10], [0.8, 17, 16, 16, 11]])  # IoU >= 0.5
    far = torch.cat([torch.full((40, 1), 0.6), torch.rand(40, 3) * 4 + 50, torch.full((40, 1), 8.0)], 1)
    middle = torch.tensor([[0.7, 20.0, 16, 16, 10]])  # IoU 0.43: neither
    proposals = [torch.cat([near, far, middle]), far[:5]]
    generator = torch.Generator().manual_seed(0)
    rois, labels, targets = sample_rcnn_rois(proposals, truth, RcnnSampling(per_patch=16), generator)
    first = rois[:, 0] == 0
    assert int(labels[first].sum()) == 3  # the two near proposals and the true box itself
    assert int(first.sum()) == 16 and int((~first).sum()) == 5 and not labels[~first].any()
    torch.testing.assert_close(targets[labels == 0], torch.zeros(int((labels == 0).sum()), 4))
    assert all(float(r[1]) != 20.0 for r in rois)
    fg = targets[labels == 1]
    torch.testing.assert_close(decode(rois[labels == 1, 1:], fg), truth[0].expand(3, 4))


@pytest.mark.parametrize("shift", list(itertools.product((0.0, 2.0), repeat=3))[:3])
def test_iou_is_symmetric(shift):
    a = torch.tensor([[10.0, 10, 10, 6]])
    b = a + torch.tensor([[*shift, 0.0]])
    assert float(box_iou(a, b)[0, 0]) == pytest.approx(float(box_iou(b, a)[0, 0]))
