"""The classification metrics against scikit-learn, and seed 001's end-to-end table on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from lungtk.cls.metrics import (
    bootstrap_auc,
    classification_report,
    confusion_matrix,
    end_to_end_table,
    roc_auc,
)


@pytest.mark.parametrize("classes", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_f1_mcc_and_confusion_match_scikit_learn(classes, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, 60)
    predicted = np.where(rng.random(60) < 0.6, truth, rng.integers(0, classes, 60))
    report = classification_report("t", [str(c) for c in range(classes)], truth, predicted, bootstrap=0)
    assert report.accuracy == pytest.approx(skm.accuracy_score(truth, predicted))
    assert report.f1 == pytest.approx(skm.f1_score(truth, predicted, average="weighted"))
    assert report.mcc == pytest.approx(skm.matthews_corrcoef(truth, predicted))
    expected = skm.confusion_matrix(truth, predicted, labels=list(range(classes)))
    assert report.confusion == expected.tolist()


def test_seed004_figure4_matrix_gives_its_table2_values():
    # seed 004, Fig. 4 (d), task 1, split 1: MCC 0.3430 in Table 2 (x10^-1 there)
    matrix = np.array([[27, 41, 1], [12, 78, 11], [4, 24, 27]])
    truth = np.repeat(np.arange(3), matrix.sum(1))
    predicted = np.concatenate([np.repeat(np.arange(3), row) for row in matrix])
    report = classification_report("pathology", ["a", "b", "c"], truth, predicted, bootstrap=0)
    assert report.mcc == pytest.approx(0.3430, abs=5e-5)
    assert report.accuracy == pytest.approx(132 / 225)


@pytest.mark.parametrize("seed", [0, 3])
def test_auc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 80)
    score = np.round(truth * 0.3 + rng.random(80), 1)  # rounded: many ties
    assert roc_auc(truth, score) == pytest.approx(skm.roc_auc_score(truth, score))
    low, high = bootstrap_auc(truth, score, samples=200)
    assert low <= roc_auc(truth, score) <= high and high - low < 0.4
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))


def test_confusion_matrix_rejects_out_of_range_classes():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_end_to_end_table_counts_each_nodule_once_at_its_best_detection():
    truth = np.array([[0, 0, 0], [50, 0, 0], [0, 80, 0], [100, 100, 100]], float)
    diameters = np.array([10.0, 10.0, 20.0, 6.0])
    malignant = np.array([True, False, True, False])
    detections = np.array(
        [
            [1, 0, 0],  # nodule 0, filtered out
            [0, 2, 0],  # nodule 0 again, predicted malignant: the nodule counts there
            [50, 6.9, 0],  # nodule 1 (0.69 diameters): predicted benign
            [0, 80 + 14.1, 0],  # 14.1 mm from nodule 2 (0.705 diameters): no match, a non-nodule
            [-60, 0, 0],  # non-nodule, filtered
        ],
        float,
    )
    p_nodule = np.array([0.2, 0.9, 0.8, 0.7, 0.1])
    p_malignant = np.array([0.9, 0.6, 0.1, 0.8, 0.9])
    table = end_to_end_table(detections, p_nodule, p_malignant, truth, diameters, malignant)
    assert table["malignant"] == {
        "missed": 1,
        "filtered out": 0,
        "predicted benign": 0,
        "predicted malignant": 1,
    }
    assert table["benign"] == {
        "missed": 1,
        "filtered out": 0,
        "predicted benign": 1,
        "predicted malignant": 0,
    }
    assert table["non-nodule"] == {
        "missed": 0,
        "filtered out": 1,
        "predicted benign": 0,
        "predicted malignant": 1,
    }
