"""Seed 000's classical learned baseline: a Random Forest on a trained network's pooled encoder features
(the paper tried it beside its joint texture head). Features are what the network's ``encode`` gives
(LunaModel, GGNClassifier), averaged over space when it is still a map."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray


def encoder_features(model: Any, inputs: NDArray[np.float32], batch_size: int = 32) -> NDArray[np.float64]:
    """(N, F) features of (N, 1, *patch) network inputs."""
    encode = getattr(model, "encode", None)
    if encode is None:
        raise TypeError(f"{type(model).__name__} has no encode(); use a LunaModel or GGNClassifier")
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            features = encode(torch.as_tensor(inputs[start : start + batch_size]))
            out.append(features.flatten(2).mean(2) if features.ndim > 2 else features)
    return torch.cat(out).double().numpy() if out else np.zeros((0, 0))


def forest_probabilities(
    train_features: ArrayLike,
    train_labels: ArrayLike,
    test_features: ArrayLike,
    *,
    trees: int = 500,
    seed: int = 0,
) -> NDArray[np.float64]:
    """A balanced Random Forest fitted on the training features: (N_test, classes) class probabilities
    (columns in the order of the sorted training labels)."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=trees, class_weight="balanced", random_state=seed, n_jobs=1)
    forest.fit(np.asarray(train_features), np.asarray(train_labels))
    return forest.predict_proba(np.asarray(test_features))
