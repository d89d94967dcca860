"""Seed 000's learned follow-up predictor: a Random Forest on the 6-count patient feature vector.

The forest is fitted with scikit-learn and saved as plain JSON: each tree's split features, thresholds,
children and leaf class fractions. Loading a model reads numbers, checks every one of them (shape, range,
that every path ends in a leaf) and predicts with numpy; nothing in the file is ever run, unlike the
pickle (joblib) files of lungtk before, which are refused without being opened past their first bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import LungtkError, write_text
from lungtk.fleischner.features import FEATURE_NAMES, patient_features
from lungtk.fleischner.nodules import Nodule
from lungtk.fleischner.result import CATEGORIES, Recommendation

FORMAT = "lungtk-fleischner-forest/2"
MAX_MODEL_BYTES = 256 * 2**20
_LEAF = -1
# First bytes of pickles and of the compressed files joblib writes (zlib, gzip, bz2, xz, lzma, lz4).
_PICKLE_MAGIC = (b"\x80", b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"\x04\x22\x4d\x18")


@dataclass(frozen=True)
class Tree:
    """One decision tree as arrays over its nodes: a sample at node ``i`` goes to ``left[i]`` when its
    feature ``feature[i]`` is <= ``threshold[i]``, else to ``right[i]``; a leaf (``left == -1``) gives
    the class fractions ``value[i]``."""

    left: NDArray[np.int64]
    right: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]
    value: NDArray[np.float64]  # (nodes, classes), rows summing to 1 at the leaves

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        node = np.zeros(len(x), dtype=np.int64)
        rows = np.arange(len(x))
        for _ in range(len(self.left)):  # children come after their parent: at most this many steps
            inner = self.left[node] != _LEAF
            if not inner.any():
                break
            go_left = x[rows, np.maximum(self.feature[node], 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node]

    def as_dict(self) -> dict[str, list[Any]]:
        return {
            "left": self.left.tolist(),
            "right": self.right.tolist(),
            "feature": self.feature.tolist(),
            "threshold": self.threshold.tolist(),
            "value": self.value.tolist(),
        }


def _tree_from_sklearn(estimator: Any) -> Tree:
    t = estimator.tree_
    value = np.asarray(t.value, dtype=np.float64)[:, 0, :]
    total = value.sum(axis=1, keepdims=True)
    value = value / np.where(total > 0, total, 1.0)  # fractions, as predict_proba normalises them
    leaf = t.children_left == _LEAF
    return Tree(
        np.asarray(t.children_left, dtype=np.int64),
        np.asarray(t.children_right, dtype=np.int64),
        np.where(leaf, _LEAF, t.feature).astype(np.int64),
        np.where(leaf, 0.0, t.threshold).astype(np.float64),
        value,
    )


@dataclass
class FleischnerForest:
    """A fitted forest: its trees and the categories their class columns stand for."""

    trees: list[Tree]
    classes: list[int]

    @classmethod
    def fit(
        cls,
        patients: Mapping[str, Sequence[Nodule]],
        labels: Mapping[str, int],
        *,
        n_estimators: int = 200,
        seed: int = 0,
    ) -> FleischnerForest:
        """Fit on the patients that have a label; every labelled patient needs a nodule list (maybe empty)."""
        from sklearn.ensemble import RandomForestClassifier

        from lungtk.core import validate

        n_estimators = validate.count(n_estimators, "the number of trees", 1, 10000)
        seed = validate.seed(seed, "the seed")
        ids = sorted(labels)
        bad = [p for p in ids if labels[p] not in (0, 1, 2, 3)]
        if bad:
            raise LungtkError(f"patient {bad[0]}: category {labels[bad[0]]!r} is not 0-3")
        missing = [p for p in ids if p not in patients]
        if missing:
            # A labelled patient without nodule rows has no nodules: all-zero features.
            patients = {**patients, **dict.fromkeys(missing, ())}
        if len(ids) < 2:
            raise LungtkError(f"training needs at least 2 labelled patients, got {len(ids)}")
        x = np.stack([patient_features(patients[p]) for p in ids])
        y = np.array([labels[p] for p in ids])
        model = RandomForestClassifier(
            n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1
        )
        model.fit(x, y)
        return cls([_tree_from_sklearn(e) for e in model.estimators_], [int(c) for c in model.classes_])

    def predict_proba(self, patients: Mapping[str, Sequence[Nodule]]) -> dict[str, np.ndarray]:
        """P(category 0..3) per patient (categories never seen in training get 0)."""
        ids = list(patients)
        if not ids:
            return {}
        # Trees compare float32 features (scikit-learn's); the counts are exact in float32.
        x = np.stack([patient_features(patients[p]) for p in ids]).astype(np.float32).astype(np.float64)
        raw = np.zeros((len(ids), len(self.classes)))
        for tree in self.trees:
            raw += tree.predict_proba(x)
        raw /= len(self.trees)
        full = np.zeros((len(ids), 4))
        full[:, self.classes] = raw
        return dict(zip(ids, full, strict=True))

    def recommend(self, patients: Mapping[str, Sequence[Nodule]]) -> list[Recommendation]:
        """The most probable category per patient, with the probabilities of all four."""
        results = []
        for patient, p in self.predict_proba(patients).items():
            category = int(p.argmax())
            results.append(
                Recommendation(
                    patient,
                    "forest",
                    category,
                    CATEGORIES[category],
                    None,
                    len(patients[patient]),
                    probabilities=[round(float(v), 6) for v in p],
                )
            )
        return results

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "features": list(FEATURE_NAMES),
            "classes": self.classes,
            "trees": [tree.as_dict() for tree in self.trees],
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON (atomically)."""
        return write_text(path, json.dumps(self.as_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FleischnerForest:
        """Read a model written by :meth:`save`; a file that is not one is a one-line LungtkError and
        nothing in it is run."""
        path = Path(path)
        if not path.is_file():
            raise LungtkError(f"{path}: no such model file; train one with `lungtk fleischner train`")
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise LungtkError(
                f"{path}: {size / 2**20:.0f} MiB is too large for a follow-up model (at most "
                f"{MAX_MODEL_BYTES // 2**20} MiB); is this the right file?"
            )
        with path.open("rb") as handle:
            head = handle.read(8)
        if head.startswith(_PICKLE_MAGIC):
            raise LungtkError(
                f"{path}: a pickle (joblib) model, which runs code when loaded, so lungtk does not load "
                "it; train the model again with `lungtk fleischner train` (models are JSON now)"
            )
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise LungtkError(f"{path}: not a model saved by `lungtk fleischner train` (not JSON)") from None
        return cls._from_dict(data, path)

    @classmethod
    def _from_dict(cls, data: object, path: Path) -> FleischnerForest:
        def bad(problem: str) -> LungtkError:
            return LungtkError(
                f"{path}: not a valid model saved by `lungtk fleischner train` ({problem}); train it again"
            )

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise bad(f"format {found!r}, expected {FORMAT!r}" if found else "no format field")
        if data.get("features") != list(FEATURE_NAMES):
            raise bad(f"its features are {data.get('features')!r}, expected {list(FEATURE_NAMES)}")
        classes = data.get("classes")
        if (
            not isinstance(classes, list)
            or not classes
            or not all(type(c) is int and 0 <= c <= 3 for c in classes)
            or len(set(classes)) != len(classes)
        ):
            raise bad(f"classes {classes!r} are not distinct categories 0-3")
        trees = data.get("trees")
        if not isinstance(trees, list) or not trees:
            raise bad("no trees")
        return cls([_checked_tree(t, len(classes), i, bad) for i, t in enumerate(trees)], classes)


def _checked_tree(data: object, n_classes: int, index: int, bad: Any) -> Tree:
    """A tree from JSON, every number checked: a path from the root always reaches a leaf."""
    if not isinstance(data, dict):
        raise bad(f"tree {index} is not an object")
    try:
        left = _int_array(data["left"])
        right = _int_array(data["right"])
        feature = _int_array(data["feature"])
        threshold = _float_array(data["threshold"])
        rows = data["value"]
        if not isinstance(rows, list):
            raise ValueError("value is not a list")
        value = np.array([_float_array(r) for r in rows], dtype=np.float64).reshape(len(rows), -1)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise bad(f"tree {index}: {exc}") from None
    n = len(left)
    if n == 0 or any(a.shape != (n,) for a in (right, feature, threshold)) or value.shape != (n, n_classes):
        raise bad(f"tree {index}: its arrays do not have one entry per node")
    nodes = np.arange(n)
    leaf = left == _LEAF
    if not np.array_equal(leaf, right == _LEAF):
        raise bad(f"tree {index}: a node has one child")
    inner = ~leaf
    if np.any(
        (left[inner] <= nodes[inner])
        | (left[inner] >= n)
        | (right[inner] <= nodes[inner])
        | (right[inner] >= n)
    ):
        raise bad(f"tree {index}: a child index does not follow its parent")
    if np.any((feature[inner] < 0) | (feature[inner] >= len(FEATURE_NAMES))):
        raise bad(f"tree {index}: a split on a feature that does not exist")
    if not np.all(np.isfinite(threshold)) or not np.all(np.isfinite(value)) or np.any(value < 0):
        raise bad(f"tree {index}: a threshold or class fraction is not a finite non-negative number")
    if not np.allclose(value[leaf].sum(axis=1), 1.0, atol=1e-6):
        raise bad(f"tree {index}: a leaf's class fractions do not sum to 1")
    return Tree(left, right, feature, threshold, value)


def _int_array(values: object) -> NDArray[np.int64]:
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise ValueError("expected a list of whole numbers")
    return np.asarray(values, dtype=np.int64)


def _float_array(values: object) -> NDArray[np.float64]:
    if not isinstance(values, list) or not all(type(v) in (int, float) for v in values):
        raise ValueError("expected a list of numbers")
    return np.asarray(values, dtype=np.float64)
