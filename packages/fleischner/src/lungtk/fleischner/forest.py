"""Seed 000's learned follow-up predictor: a Random Forest on the 6-count patient feature vector.

Models are saved with joblib, which pickles: loading one runs code from the file, so load only models
you trained yourself or got from someone you trust.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungtk.core import LungtkError, atomic_path
from lungtk.fleischner.features import FEATURE_NAMES, patient_features
from lungtk.fleischner.nodules import Nodule
from lungtk.fleischner.result import CATEGORIES, Recommendation

FORMAT = "lungtk-fleischner-forest/1"


@dataclass
class FleischnerForest:
    """A fitted forest plus what it needs to be used again."""

    model: object
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

        ids = sorted(labels)
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
        return cls(model, [int(c) for c in model.classes_])

    def predict_proba(self, patients: Mapping[str, Sequence[Nodule]]) -> dict[str, np.ndarray]:
        """P(category 0..3) per patient (categories never seen in training get 0)."""
        ids = list(patients)
        if not ids:
            return {}
        x = np.stack([patient_features(patients[p]) for p in ids])
        raw = self.model.predict_proba(x)  # type: ignore[attr-defined]
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

    def save(self, path: str | os.PathLike[str]) -> Path:
        import joblib

        path = Path(path)
        with atomic_path(path) as tmp:
            joblib.dump(
                {"format": FORMAT, "features": FEATURE_NAMES, "classes": self.classes, "model": self.model},
                tmp,
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FleischnerForest:
        """Load a model saved by :meth:`save`. This unpickles: only load files you trust."""
        import joblib

        path = Path(path)
        if not path.is_file():
            raise LungtkError(f"{path}: no such model file; train one with `lungtk fleischner train`")
        try:
            data = joblib.load(path)
        except Exception as exc:
            raise LungtkError(f"{path}: not a model saved by lungtk fleischner train ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LungtkError(f"{path}: not a model saved by lungtk fleischner train")
        return cls(data["model"], list(data["classes"]))
