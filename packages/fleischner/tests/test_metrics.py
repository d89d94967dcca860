"""Agreement metrics against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion

from lungtk.core import LungtkError
from lungtk.fleischner import balanced_accuracy, confusion_matrix, weighted_kappa


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.6, truth, rng.integers(0, 4, 60))
    assert weighted_kappa(truth, predicted) == pytest.approx(
        cohen_kappa_score(truth, predicted, weights="quadratic")
    )
    assert balanced_accuracy(truth, predicted) == pytest.approx(balanced_accuracy_score(truth, predicted))
    np.testing.assert_array_equal(
        confusion_matrix(truth, predicted), sk_confusion(truth, predicted, labels=range(4))
    )


def test_kappa_edges():
    assert weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0
    # Quadratic weights punish far misses more than near ones.
    assert weighted_kappa([0, 1, 2, 3], [1, 2, 3, 2]) > weighted_kappa([0, 1, 2, 3], [3, 3, 0, 0])
    with pytest.raises(LungtkError):
        weighted_kappa([0, 1], [0])
    with pytest.raises(LungtkError, match="0..3"):
        confusion_matrix([0, 4], [0, 1])
