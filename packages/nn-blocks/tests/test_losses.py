"""Losses on hand-computed cases and against direct formulas (numpy, scikit-learn, torch's own)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from lungtk.nn_blocks import (
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    JointSegClsLoss,
    RecallWeightedDiceLoss,
    TopKBCEDiceLoss,
    WeightedCrossEntropyLoss,
    inverse_frequency_weights,
)
from lungtk.nn_blocks.losses import topk_bce

rng = np.random.default_rng(0)


def dice_numpy(p, g, smooth):
    axes = tuple(range(2, p.ndim))
    inter = (p * g).sum(axes)
    return 1 - (2 * inter + smooth) / (p.sum(axes) + g.sum(axes) + smooth)


@pytest.mark.parametrize("spatial", [(6, 7), (4, 5, 6)])
def test_dice_matches_the_numpy_formula(spatial):
    p = rng.random((3, 2, *spatial))
    g = (rng.random((3, 2, *spatial)) > 0.7).astype(float)
    expected = dice_numpy(p, g, 1e-5).mean()
    got = DiceLoss(None)(torch.tensor(p), torch.tensor(g))
    assert got.item() == pytest.approx(expected, rel=1e-9)
    logits = rng.normal(size=(3, 2, *spatial))
    sig = DiceLoss("sigmoid")(torch.tensor(logits), torch.tensor(g))
    assert sig.item() == pytest.approx(dice_numpy(1 / (1 + np.exp(-logits)), g, 1e-5).mean())


@pytest.mark.parametrize(
    "loss", [DiceLoss(None), GeneralizedDiceLoss(None), RecallWeightedDiceLoss(activation=None)]
)
def test_a_perfect_prediction_scores_zero(loss):
    g = torch.tensor((rng.random((2, 1, 5, 6, 7)) > 0.5).astype(np.float32))
    assert loss(g.clone(), g).item() == pytest.approx(0.0, abs=1e-6)


def test_softmax_with_index_targets_equals_one_hot():
    logits = torch.randn(2, 3, 5, 6, 7)
    idx = torch.randint(0, 3, (2, 5, 6, 7))
    one_hot = F.one_hot(idx, 3).movedim(-1, 1).float()
    for loss in (DiceLoss("softmax"), GeneralizedDiceLoss("softmax")):
        torch.testing.assert_close(loss(logits, idx), loss(logits, one_hot))
        torch.testing.assert_close(loss(logits, idx[:, None]), loss(logits, one_hot))
    without_bg = DiceLoss("softmax", include_background=False)(logits, idx)
    per = DiceLoss("softmax", reduction="none").per_channel(logits, idx)
    assert without_bg.item() == pytest.approx(per[:, 1:].mean().item())


def test_generalized_dice_weights_by_inverse_squared_volume():
    p = rng.random((2, 3, 8, 8))
    g = np.zeros((2, 3, 8, 8))
    g[:, 0] = 1
    g[:, 1, :2, :2] = 1  # 4 voxels
    g[:, 0, :2, :2] = 0
    g[:, 2, 6:, 6:] = 1  # 4 voxels
    g[:, 0, 6:, 6:] = 0
    w = 1 / g.sum(axis=(2, 3)) ** 2
    inter = (p * g).sum(axis=(2, 3))
    union = (p + g).sum(axis=(2, 3))
    expected = (1 - (2 * (w * inter).sum(1) + 1e-5) / ((w * union).sum(1) + 1e-5)).mean()
    got = GeneralizedDiceLoss(None)(torch.tensor(p), torch.tensor(g))
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_generalized_dice_cares_about_small_structures_more_than_dice():
    # Background right, the small foreground entirely missed.
    g = torch.zeros(1, 2, 16, 16)
    g[:, 0] = 1
    g[:, 0, :2, :2] = 0
    g[:, 1, :2, :2] = 1
    p = torch.zeros_like(g)
    p[:, 0] = 1
    # Dice averages a perfect background and a missed foreground (~0.5); Generalized Dice is near 1.
    assert GeneralizedDiceLoss(None)(p, g) > 0.95 and DiceLoss(None)(p, g) < 0.55


def test_recall_weighted_dice_punishes_misses_not_extra_voxels():
    g = torch.zeros(1, 1, 10, 10)
    g[..., 3:6, 3:6] = 1
    over = g.clone()
    over[..., 0:8, 0:8] = 1  # every target voxel found, plus false positives
    under = torch.zeros_like(g)
    under[..., 3:6, 3:4] = 1  # a third of the target found
    loss = RecallWeightedDiceLoss(fn_weight=8.0, activation=None)
    dice = DiceLoss(None, smooth=1.0)
    assert loss(over, g).item() == pytest.approx(dice(over, g).item())  # the miss term is 0
    assert loss(under, g).item() == pytest.approx(dice(under, g).item() + 8 * dice(under * g, g).item())
    assert loss(under, g) > loss(over, g)


def test_topk_bce_is_the_mean_of_the_hardest_voxels():
    logits = torch.randn(2, 1, 6, 6, 6)
    target = (torch.rand(2, 1, 6, 6, 6) > 0.9).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten().numpy()
    k = math.ceil(0.1 * bce.size)
    assert topk_bce(logits, target, 0.1).item() == pytest.approx(np.sort(bce)[-k:].mean(), rel=1e-6)


def test_topk_bce_dice_normalises_by_its_first_batch():
    logits = torch.randn(2, 1, 6, 6, 6)
    target = (torch.rand(2, 1, 6, 6, 6) > 0.9).float()
    loss = TopKBCEDiceLoss(alpha=0.3)
    assert loss(logits, target).item() == pytest.approx(1.0)  # both terms divided by themselves
    raw = TopKBCEDiceLoss(alpha=0.3, normalize=False)(logits * 2, target)
    fraction = float(target.mean())
    expected = 0.3 * topk_bce(logits * 2, target, fraction) + 0.7 * DiceLoss("sigmoid")(logits * 2, target)
    assert raw.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_loss_formula():
    # One positive with p = sigmoid(0) = 0.5: -0.25 * 0.5^2 * log(0.5).
    got = FocalLoss(alpha=0.25, gamma=2.0)(torch.zeros(1), torch.ones(1))
    assert got.item() == pytest.approx(-0.25 * 0.25 * math.log(0.5))
    logits, target = torch.randn(50), (torch.rand(50) > 0.5).float()
    plain = FocalLoss(alpha=None, gamma=0.0)(logits, target)
    torch.testing.assert_close(plain, F.binary_cross_entropy_with_logits(logits, target))
    logits3, idx = torch.randn(20, 3), torch.randint(0, 3, (20,))
    torch.testing.assert_close(FocalLoss(None, 0.0, "softmax")(logits3, idx), F.cross_entropy(logits3, idx))
    # Easy examples count less than hard ones.
    easy = FocalLoss()(torch.tensor([4.0]), torch.ones(1))
    hard = FocalLoss()(torch.tensor([-4.0]), torch.ones(1))
    assert hard > 100 * easy


def test_inverse_frequency_weights_match_scikit_learn():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    got = inverse_frequency_weights(np.bincount(labels))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    logits, target = torch.randn(100, 3), torch.tensor(labels)
    torch.testing.assert_close(
        WeightedCrossEntropyLoss(3)(logits, target),
        F.cross_entropy(logits, target, weight=torch.tensor(expected, dtype=torch.float32)),
    )


def test_joint_loss_is_dice_plus_lambda_ce():
    seg, seg_t = torch.randn(2, 2, 4, 4, 4), torch.randint(0, 2, (2, 4, 4, 4))
    cls, cls_t = torch.randn(2, 3), torch.tensor([0, 2])
    joint = JointSegClsLoss(lam=0.7)
    total = joint(seg, seg_t, cls, cls_t)
    expected = DiceLoss("softmax")(seg, seg_t) + 0.7 * F.cross_entropy(cls, cls_t)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(joint.last) == {"seg", "cls"}


def test_half_precision_predictions_are_summed_in_float32():
    # 64^3 = 262144 voxels: a float16 sum would overflow (max 65504) and give NaN or inf.
    ones = torch.ones(1, 1, 64, 64, 64, dtype=torch.float16)
    for loss in (DiceLoss(None), GeneralizedDiceLoss(None)):
        value = loss(ones, ones.float())
        assert value.dtype == torch.float32 and value.item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.full((1, 1, 64, 64, 64), 3.0, dtype=torch.bfloat16)
    assert torch.isfinite(TopKBCEDiceLoss()(logits, ones.float()))
