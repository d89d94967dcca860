import itertools

import pytest
import torch

from lungtk.train.metrics import BinaryClassificationMetric, SegmentationMetric


def test_segmentation_counts_over_the_whole_set():
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, 0, :2] = 1  # 32 voxels
    logits = torch.full((2, 1, 4, 4, 4), -5.0)
    logits[0, 0, :1] = 5  # 16 true positives
    logits[1, 0, :1] = 5  # 16 false positives
    m = SegmentationMetric()
    m.update(logits[:1], {"target": target[:1]})
    m.update(logits[1:], {"target": target[1:]})
    values = m.compute()
    assert values["dice"] == pytest.approx(2 * 16 / (2 * 16 + 16 + 16))
    assert values["precision"] == pytest.approx(0.5) and values["recall"] == pytest.approx(0.5)


def test_summed_counts_equal_one_pass():
    """What torchrun does: each rank's counts added, then computed."""
    torch.manual_seed(0)
    logits, target = torch.randn(6, 1, 3, 3, 3), (torch.rand(6, 1, 3, 3, 3) > 0.7).float()
    whole, a, b = SegmentationMetric(), SegmentationMetric(), SegmentationMetric()
    whole.update(logits, {"target": target})
    a.update(logits[:2], {"target": target[:2]})
    b.update(logits[2:], {"target": target[2:]})
    others = iter([b.sums[k] for k in sorted(b.sums)])  # reduce() goes through the counts by name
    a.reduce(lambda t: t + next(others))
    assert a.compute() == whole.compute()


def test_binned_auc_matches_the_exact_one():
    torch.manual_seed(1)
    labels = (torch.rand(200) > 0.6).long()
    logits = torch.randn(200) + labels * 1.2
    m = BinaryClassificationMetric()
    m.update(logits[:, None], {"label": labels})
    scores = torch.sigmoid(logits)
    pos, neg = scores[labels == 1], scores[labels == 0]
    exact = sum(float(p > n) + 0.5 * float(p == n) for p, n in itertools.product(pos, neg)) / (
        len(pos) * len(neg)
    )
    values = m.compute()
    assert values["auc"] == pytest.approx(exact, abs=0.005)
    predicted = scores >= 0.5
    assert values["accuracy"] == pytest.approx(float((predicted == (labels == 1)).float().mean()))
    two_class = BinaryClassificationMetric()
    two_class.update(torch.stack([torch.zeros(200), logits], 1), {"label": labels})
    assert two_class.compute()["auc"] == pytest.approx(values["auc"], abs=0.01)


def test_joint_head_metric_scores_the_rated_patches_as_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    from lungtk.train.metrics import JointHeadMetric

    torch.manual_seed(2)
    seg, target = torch.randn(40, 1, 3, 3, 3), (torch.rand(40, 1, 3, 3, 3) > 0.6).float()
    texture, label = torch.randn(40, 3), torch.randint(-1, 3, (40,))
    joint, plain = JointHeadMetric(3), SegmentationMetric()
    for part in (slice(0, 25), slice(25, 40)):  # two batches
        joint.update((seg[part], texture[part]), {"target": target[part], "label": label[part]})
        plain.update(seg[part], {"target": target[part]})
    values = joint.compute()
    rated = label >= 0
    truth, pred = label[rated].numpy(), texture[rated].argmax(1).numpy()
    assert {k: values[k] for k in plain.compute()} == plain.compute()
    assert values["head_accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert values["head_f1"] == pytest.approx(f1_score(truth, pred, average="weighted"))
    assert values["head_mcc"] == pytest.approx(matthews_corrcoef(truth, pred))
    alone = JointHeadMetric(3)
    alone.update(seg, {"target": target})  # no labels (a data set without ratings): segmentation only
    assert set(alone.compute()) == {"dice", "precision", "recall"}
