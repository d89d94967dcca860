"""Segmentation metrics against independent references: voxel counting by hand, a brute-force pairwise
distance over surface voxels found by a neighbour test (not by erosion), numpy / scipy for Pearson, and
scikit-learn for voxel precision and recall."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score, precision_score, recall_score

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io import write_image
from lungtk.seg.metrics import aggregate, case_metrics, dice, evaluate_folders, jaccard, surface

SPACING = (2.5, 0.7, 0.8)  # index, row, col (mm)


def _cube(shape, lo, hi) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def _ellipsoid(shape, centre_irc, radii_mm, spacing) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grid, centre_irc, spacing, radii_mm, strict=True))
    return r2 <= 1.0


def _surface_by_neighbours(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with at least one of their 6 face neighbours outside it (outside the array
    counts as outside the mask)."""
    padded = np.pad(mask, 1)
    core = tuple(slice(1, -1) for _ in range(3))
    all_inside = np.ones_like(mask)
    for axis, step in itertools.product(range(3), (-1, 1)):
        all_inside &= np.roll(padded, step, axis=axis)[core]
    return mask & ~all_inside


def _brute_force_distances(pred, truth, spacing):
    """Every surface voxel of each mask against every surface voxel of the other, in mm: O(n m)."""
    pa = np.argwhere(_surface_by_neighbours(pred)) * np.asarray(spacing)
    pb = np.argwhere(_surface_by_neighbours(truth)) * np.asarray(spacing)
    pairwise = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    d_ab, d_ba = pairwise.min(axis=1), pairwise.min(axis=0)
    return float(np.concatenate([d_ab, d_ba]).mean()), float(max(d_ab.max(), d_ba.max()))


# -- overlap -------------------------------------------------------------------------------------------


def test_two_cubes_dice_iou_and_volumes_by_counting() -> None:
    a = _cube((8, 8, 8), (2, 2, 2), (6, 6, 6))  # 64 voxels
    b = _cube((8, 8, 8), (3, 2, 2), (7, 6, 6))  # 64 voxels, shifted by one slice: 3*4*4 = 48 shared
    m = case_metrics(a, b, SPACING)
    assert (m.tp, m.fp, m.fn) == (48, 16, 16)
    assert m.dice == pytest.approx(2 * 48 / 128)
    assert m.jaccard == pytest.approx(48 / 80)
    assert m.precision == pytest.approx(48 / 64) and m.recall == pytest.approx(48 / 64)
    voxel = 2.5 * 0.7 * 0.8
    assert m.volume_pred_mm3 == pytest.approx(64 * voxel) and m.volume_truth_mm3 == pytest.approx(64 * voxel)
    assert dice(a, b) == pytest.approx(0.75) and jaccard(a, b) == pytest.approx(0.6)


def test_iou_is_dice_over_two_minus_dice_and_labels_are_foreground() -> None:
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 3, (6, 7, 8))  # labels 1 and 2 are both foreground
    truth = rng.random((6, 7, 8)) < 0.4
    d = dice(pred, truth)
    assert jaccard(pred, truth) == pytest.approx(d / (2 - d))
    assert case_metrics(pred, truth).dice == pytest.approx(dice(pred > 0, truth))


def test_voxel_precision_recall_f1_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    preds = [rng.random((5, 6, 7)) < p for p in (0.2, 0.5, 0.7)]
    truths = [rng.random((5, 6, 7)) < p for p in (0.3, 0.4, 0.6)]
    cases = [case_metrics(p, t, SPACING) for p, t in zip(preds, truths, strict=True)]
    for m, p, t in zip(cases, preds, truths, strict=True):
        assert m.precision == pytest.approx(precision_score(t.ravel(), p.ravel()))
        assert m.recall == pytest.approx(recall_score(t.ravel(), p.ravel()))
    # seed 001: split-level scores from voxel sums over every case = scores of the concatenated voxels
    flat_p = np.concatenate([p.ravel() for p in preds])
    flat_t = np.concatenate([t.ravel() for t in truths])
    s = aggregate(cases)
    assert s.voxel_precision == pytest.approx(precision_score(flat_t, flat_p))
    assert s.voxel_recall == pytest.approx(recall_score(flat_t, flat_p))
    assert s.voxel_f1 == pytest.approx(f1_score(flat_t, flat_p))


# -- surfaces and distances ----------------------------------------------------------------------------


def test_surface_is_mask_minus_cross_erosion() -> None:
    cross = np.zeros((3, 3, 3), dtype=bool)
    cross[1, 1, :] = cross[1, :, 1] = cross[:, 1, 1] = True  # the centre has all 6 face neighbours
    assert surface(cross).sum() == 6 and not surface(cross)[1, 1, 1]
    full = np.ones((4, 4, 4), dtype=bool)  # touches the array's edge: its outer shell is surface
    assert surface(full).sum() == 64 - 8
    rng = np.random.default_rng(0)
    blob = rng.random((7, 8, 9)) < 0.7
    np.testing.assert_array_equal(surface(blob), _surface_by_neighbours(blob))


def test_two_single_voxels_a_known_distance_apart() -> None:
    a = np.zeros((6, 8, 5), dtype=bool)
    b = a.copy()
    a[1, 2, 3] = True
    b[4, 6, 3] = True  # 3 slices of 2.0 mm and 4 rows of 0.5 mm: sqrt(6^2 + 2^2)
    m = case_metrics(a, b, (2.0, 0.5, 0.75))
    assert m.hd_mm == pytest.approx(math.sqrt(40.0))
    assert m.mad_mm == pytest.approx(math.sqrt(40.0))
    assert m.dice == 0.0


def test_identical_masks_have_zero_distances() -> None:
    a = _ellipsoid((12, 14, 14), (6, 7, 7), (6.0, 4.0, 4.0), SPACING)
    m = case_metrics(a, a.copy(), SPACING)
    assert m.mad_mm == 0.0 and m.hd_mm == 0.0 and m.dice == 1.0


@pytest.mark.parametrize("shift", [(0, 0, 0), (1, 2, -1), (0, 5, 3)])
def test_ellipsoids_against_brute_force_pairwise_distances(shift) -> None:
    shape = (14, 24, 22)
    pred = _ellipsoid(shape, (7 + shift[0], 11 + shift[1], 10 + shift[2]), (9.0, 5.0, 4.5), SPACING)
    truth = _ellipsoid(shape, (7, 11, 10), (7.0, 4.0, 5.0), SPACING)
    mad, hd = _brute_force_distances(pred, truth, SPACING)
    m = case_metrics(pred, truth, SPACING)
    assert m.mad_mm == pytest.approx(mad, rel=1e-9) and m.hd_mm == pytest.approx(hd, rel=1e-9)
    assert hd > 0


def test_mask_on_the_array_edge_against_brute_force() -> None:
    pred = _cube((5, 6, 7), (0, 0, 0), (3, 6, 4))
    truth = _cube((5, 6, 7), (1, 2, 2), (5, 5, 7))
    mad, hd = _brute_force_distances(pred, truth, SPACING)
    m = case_metrics(pred, truth, SPACING)
    assert m.mad_mm == pytest.approx(mad) and m.hd_mm == pytest.approx(hd)


# -- empty masks ---------------------------------------------------------------------------------------


def test_empty_cases() -> None:
    empty = np.zeros((4, 5, 6), dtype=bool)
    some = _cube((4, 5, 6), (1, 1, 1), (3, 3, 3))
    both = case_metrics(empty, empty, SPACING)
    assert (both.dice, both.jaccard, both.precision, both.recall, both.mad_mm, both.hd_mm) == (
        1,
        1,
        1,
        1,
        0,
        0,
    )
    missed = case_metrics(empty, some, SPACING)
    assert (missed.dice, missed.jaccard, missed.precision, missed.recall) == (0, 0, 0, 0)
    assert math.isinf(missed.mad_mm) and math.isinf(missed.hd_mm)
    spurious = case_metrics(some, empty, SPACING)
    assert (spurious.dice, spurious.precision, spurious.recall) == (0, 0, 0)
    assert math.isinf(spurious.hd_mm)
    assert missed.as_dict()["hd_mm"] is None  # JSON has no infinity


def test_aggregate_leaves_undefined_distances_out_and_counts_them() -> None:
    empty = np.zeros((8, 8, 8), dtype=bool)
    a = _cube((8, 8, 8), (2, 2, 2), (6, 6, 6))
    b = _cube((8, 8, 8), (3, 2, 2), (7, 6, 6))
    good = case_metrics(a, b, SPACING)
    missed = case_metrics(empty, b, SPACING)
    s = aggregate([good, missed, case_metrics(empty, empty, SPACING)])
    assert s.cases == 3 and s.distance_undefined == 1
    assert s.mad_mm == pytest.approx((good.mad_mm + 0.0) / 2) and s.hd_mm == pytest.approx(good.hd_mm / 2)
    assert s.jaccard == pytest.approx((0.6 + 0.0 + 1.0) / 3) and s.jaccard_star == pytest.approx(
        1 - s.jaccard
    )
    json.dumps(s.as_dict(), allow_nan=False)


# -- the LNDb set over cases ---------------------------------------------------------------------------


def test_volume_agreement_against_numpy_and_scipy() -> None:
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(6):
        truth = _cube((10, 10, 10), (2, 2, 2), tuple(rng.integers(4, 9, 3)))
        pred = _cube((10, 10, 10), tuple(rng.integers(1, 4, 3)), tuple(rng.integers(4, 10, 3)))
        cases.append(case_metrics(pred, truth, SPACING))
    v_pred = np.array([c.volume_pred_mm3 for c in cases])
    v_true = np.array([c.volume_truth_mm3 for c in cases])
    s = aggregate(cases)
    assert s.volume_correlation == pytest.approx(np.corrcoef(v_pred, v_true)[0, 1])
    assert s.volume_correlation == pytest.approx(stats.pearsonr(v_pred, v_true)[0])
    assert s.volume_correlation_star == pytest.approx(1 - s.volume_correlation)
    diffs = [p - t for p, t in zip(v_pred, v_true, strict=True)]
    assert s.bias_mm3 == pytest.approx(sum(abs(d) for d in diffs) / 6)
    mean = sum(diffs) / 6
    assert s.std_mm3 == pytest.approx(math.sqrt(sum((d - mean) ** 2 for d in diffs) / 6))
    assert s.dice == pytest.approx(sum(c.dice for c in cases) / 6)


def test_undefined_correlation_is_none_in_the_dict() -> None:
    a = _cube((6, 6, 6), (1, 1, 1), (4, 4, 4))
    d = aggregate([case_metrics(a, a, SPACING)]).as_dict()
    assert d["volume_correlation"] is None and d["volume_correlation_star"] is None
    assert aggregate([]).cases == 0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))


# -- folders of label images ---------------------------------------------------------------------------

GEOMETRY = Geometry((-10.0, 20.0, -100.0), (0.8, 0.7, 2.5))  # x, y, z: spacing in array order 2.5, 0.7, 0.8


def test_folders_pair_by_uid_and_report_missing_and_extra(tmp_path) -> None:
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    a = _cube((8, 8, 8), (2, 2, 2), (6, 6, 6)).astype(np.uint8)
    b = _cube((8, 8, 8), (3, 2, 2), (7, 6, 6)).astype(np.uint8)
    write_image(truth_dir / "scan1.mhd", b, GEOMETRY)
    write_image(pred_dir / "scan1.nii.gz", a * 3, GEOMETRY)  # another format and label 3: still foreground
    write_image(truth_dir / "scan2.nii.gz", b, GEOMETRY)  # no prediction
    write_image(pred_dir / "other.mhd", a, GEOMETRY)  # no truth
    result = evaluate_folders(pred_dir, truth_dir)
    assert [c.case for c in result.cases] == ["scan1", "scan2"]
    assert result.cases[0].dice == pytest.approx(0.75)
    assert result.cases[0].voxel_volume_mm3 == pytest.approx(2.5 * 0.7 * 0.8)
    expected = case_metrics(a, b, (2.5, 0.7, 0.8))
    assert result.cases[0].hd_mm == pytest.approx(expected.hd_mm)
    assert result.cases[1].prediction_missing and result.cases[1].dice == 0.0
    assert result.missing_predictions == ["scan2"] and result.extra_predictions == ["other"]
    assert result.summary.distance_undefined == 1
    csv = result.per_case_csv().splitlines()
    assert csv[0].startswith("case,dice,jaccard") and csv[2].split(",")[7] == "inf"


def test_folders_per_label(tmp_path) -> None:
    truth = np.zeros((8, 10, 10), dtype=np.uint8)
    truth[1:4, 1:4, 1:4] = 1
    truth[5:8, 6:9, 6:9] = 2
    pred = np.zeros_like(truth)
    pred[1:4, 1:4, 1:4] = 7  # matches truth label 1 exactly
    pred[0:2, 7:9, 0:2] = 9  # overlaps nothing
    write_image(tmp_path / "t" / "s.nii.gz", truth, GEOMETRY)
    write_image(tmp_path / "p" / "s.nii.gz", pred, GEOMETRY)
    result = evaluate_folders(tmp_path / "p", tmp_path / "t", per_label=True)
    assert [(c.case, c.dice) for c in result.cases] == [("s:1", 1.0), ("s:2", 0.0)]
    assert any("overlapping no truth label" in n for n in result.notes)


def test_geometry_mismatch_names_both_files(tmp_path) -> None:
    a = _cube((4, 5, 6), (1, 1, 1), (3, 3, 3)).astype(np.uint8)
    write_image(tmp_path / "t" / "s.mhd", a, GEOMETRY)
    write_image(tmp_path / "p" / "s.mhd", a, Geometry((-10.0, 20.0, -99.0), (0.8, 0.7, 2.5)))
    with pytest.raises(
        LungtkError, match=r"prediction .*p.s\.mhd and truth .*t.s\.mhd differ in geometry.*origin"
    ):
        evaluate_folders(tmp_path / "p", tmp_path / "t")
    write_image(tmp_path / "p" / "s.mhd", np.zeros((4, 5, 7), np.uint8), GEOMETRY)
    with pytest.raises(LungtkError, match="shape"):
        evaluate_folders(tmp_path / "p", tmp_path / "t")


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(LungtkError, match="not found"):
        evaluate_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "t").mkdir()
    with pytest.raises(LungtkError, match="no label images"):
        evaluate_folders(tmp_path, tmp_path / "t")
