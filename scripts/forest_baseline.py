"""Seed 000's classical learned baseline: a Random Forest on a trained network's pooled encoder features,
fitted on one data set's rated nodules and scored on another's.

    uv run python scripts/forest_baseline.py MODEL TASK TRAIN_DATA EVAL_DATA [EVAL_DATA ...]

MODEL is a LunaModel file (e.g. the shipped nodule-cnn), TASK texture or malignancy. Prints one CSV line per
evaluation set: task, n, accuracy, support-weighted F1, MCC and, for two classes, the ROC AUC
(lungtk.cls.metrics).
"""

from __future__ import annotations

import sys

import numpy as np

from lungtk.cls.forest import encoder_features, forest_probabilities
from lungtk.cls.metrics import classification_report
from lungtk.core.labels import TASK_LABELS
from lungtk.ct_io import read_ct
from lungtk.ct_io.datasets import open_dataset
from lungtk.train.data.sources import annotation_label
from lungtk.train.modelfile import load_model


def features_and_labels(model, spec, root: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    index = open_dataset(root)
    feats, labels = [], []
    for scan in index.on_disk():
        rated = [(a, annotation_label(a, task)) for a in index.annotations_of(scan.uid) if a.is_nodule]
        rated = [(a, k) for a, k in rated if k >= 0]
        if not rated:
            continue
        ct = read_ct(scan.image)
        cubes = spec.cubes(ct.geometry, [a.center_xyz for a, _ in rated])
        feats.append(encoder_features(model, spec.sample(np.asarray(ct.array), ct.geometry, cubes)))
        labels += [k for _, k in rated]
    return np.concatenate(feats), np.asarray(labels)


def main(argv: list[str]) -> None:
    model_path, task, train_root, *eval_roots = argv
    loaded = load_model(model_path, "luna-model")
    spec = loaded.input_spec()
    x, y = features_and_labels(loaded.model, spec, train_root, task)
    print("set,task,n,accuracy,f1,mcc,auc")
    for root in eval_roots:
        ex, ey = features_and_labels(loaded.model, spec, root, task)
        probs = forest_probabilities(x, y, ex)
        classes = np.unique(y)
        predicted = classes[np.argmax(probs, axis=1)]
        score = probs[:, list(classes).index(1)] if len(TASK_LABELS[task]) == 2 and 1 in classes else None
        r = classification_report(task, TASK_LABELS[task], ey, predicted, score, bootstrap=0)
        auc = "" if r.auc is None else f"{r.auc:.4f}"
        print(f"{root},{task},{r.n},{r.accuracy:.4f},{r.f1:.4f},{r.mcc:.4f},{auc}")


if __name__ == "__main__":
    main(sys.argv[1:])
