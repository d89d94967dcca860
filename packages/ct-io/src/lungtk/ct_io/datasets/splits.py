"""Train / validation / test splits and k folds by patient: a patient's scans always stay together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lungtk.core import LungtkError
from lungtk.ct_io.datasets.records import DatasetIndex


def split_patients(
    patients: Sequence[str], fractions: Mapping[str, float], seed: int = 0
) -> dict[str, list[str]]:
    """Shuffle the distinct patients with ``seed`` and cut them by ``fractions`` (which must sum to 1).

    Counts are rounded so that they add up to the number of patients; each named split with a positive
    fraction gets at least one patient when there are enough.
    """
    unique = sorted(set(patients))
    names = list(fractions)
    weights = np.array([fractions[n] for n in names], dtype=float)
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise LungtkError(f"split fractions must be non-negative and sum to 1, got {dict(fractions)}")
    counts = _counts(len(unique), weights)
    order = np.random.default_rng(seed).permutation(len(unique))
    cuts = np.cumsum([0, *counts])
    return {name: sorted(unique[i] for i in order[cuts[k] : cuts[k + 1]]) for k, name in enumerate(names)}


def _counts(n: int, weights: np.ndarray) -> list[int]:
    raw = weights * n
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    # A split asked for but rounded to nothing takes one patient from the largest split.
    for k in np.flatnonzero((weights > 0) & (counts == 0)):
        largest = int(np.argmax(counts))
        if counts[largest] > 1:
            counts[largest] -= 1
            counts[k] += 1
    return counts.tolist()


def patient_folds(patients: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """Patient -> fold in 0..k-1, folds as equal in size as they can be."""
    unique = sorted(set(patients))
    if k < 2 or k > len(unique):
        n = len(unique)
        if n < 2:
            raise LungtkError(f"cannot make {k} folds of {n} patient(s): folds need 2 patients or more")
        raise LungtkError(
            f"cannot make {k} folds of {n} patients: use {'2' if n == 2 else f'2 to {n}'} folds"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i]: rank % k for rank, i in enumerate(order)}


def split_scans(
    index: DatasetIndex, fractions: Mapping[str, float] | None = None, seed: int = 0, *, on_disk: bool = True
) -> dict[str, list[str]]:
    """Scan uids per split (default 80/10/10 train/val/test, as seed 001), cut by patient."""
    fractions = fractions or {"train": 0.8, "val": 0.1, "test": 0.1}
    scans = index.on_disk() if on_disk else list(index)
    if not scans:
        raise LungtkError(f"{index.name} at {index.root}: no scans to split")
    by_patient = split_patients([s.patient for s in scans], fractions, seed)
    split_of = {p: name for name, members in by_patient.items() for p in members}
    result: dict[str, list[str]] = {name: [] for name in fractions}
    for scan in scans:
        result[split_of[scan.patient]].append(scan.uid)
    return result
