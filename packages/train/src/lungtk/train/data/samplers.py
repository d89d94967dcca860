"""Where patches come from: a deterministic function of (seed, sample number).

Sample ``k`` of a run is drawn by ``numpy.random.default_rng([seed, k])`` alone, so a resumed run draws
exactly the samples the uninterrupted one would have (the sampler's position is just ``k``), results do
not depend on the number of DataLoader workers, and torchrun ranks take disjoint sample numbers (as
``DistributedSampler`` does): per optimizer step, ``batch_size * accumulate`` samples for each of the
``world`` ranks, rank r the r-th block.

- ``positive``: with probability ``pos_fraction`` a patch is centred near a nodule (nnU-Net's foreground
  oversampling), else anywhere in a random scan;
- ``balanced``: seed 001's alternation: one positive, then ``balance_ratio`` negatives, and again;
- ``isample``: seed 002's error-region sampling (Berger et al.): a random scan, then a centre drawn with a
  probability proportional to an error map of the current network, refreshed every ``isample_every``
  steps (:func:`lungtk.train.isample.compute_error_maps`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count

import numpy as np

from lungtk.core import LungtkError
from lungtk.train.data.sources import ScanRecord

ERROR_FLOOR = 1e-3  # every cell stays drawable


@dataclass(frozen=True)
class PatchRequest:
    """One sample: a scan (index into the records), a centre (continuous native voxels), the seed of its
    augmentation, the class for classification (-1: none) and whether to augment."""

    scan: int
    centre: tuple[float, float, float]
    seed: int
    label: int = -1
    augment: bool = True


@dataclass
class ErrorMaps:
    """Per scan, a grid of cells with the network's mean error in each; a cell spans ``cell`` voxels."""

    maps: dict[int, np.ndarray]
    cell: dict[int, np.ndarray]
    step: int = 0


class PatchSampler:
    def __init__(
        self,
        records: Sequence[ScanRecord],
        *,
        kind: str,
        seed: int,
        extent: Sequence[np.ndarray],
        target: str = "mask",
        pos_fraction: float = 0.33,
        balance_ratio: int = 1,
        jitter: float = 0.5,
    ) -> None:
        """``extent[i]``: the native voxels one patch spans in scan i (patch size times spacing ratio)."""
        self.records, self.kind, self.seed, self.target = list(records), kind, int(seed), target
        self.extent = [np.asarray(e, dtype=float) for e in extent]
        self.pos_fraction, self.balance_ratio, self.jitter = pos_fraction, int(balance_ratio), jitter
        self.error_maps: ErrorMaps | None = None
        if kind == "isample" and target != "mask":
            raise LungtkError("setting sampler=isample needs a segmentation task (error maps need masks)")
        if target == "label":
            self.pools = class_pools(self.records)
            if len(self.pools) < 2:
                raise LungtkError("a classification task needs candidates of two classes or more to train on")
            self.positives = []
        else:
            self.positives = [(i, c) for i, r in enumerate(self.records) for c in r.positives]
        self.positive_scans = sorted({i for i, _ in self.positives})

    # -- one sample ------------------------------------------------------------------------------------
    def request(self, k: int) -> PatchRequest:
        rng = np.random.default_rng([self.seed, k])
        aug_seed = int(rng.integers(2**63 - 1))
        if self.kind == "isample":
            scan = int(rng.integers(len(self.records)))
            return PatchRequest(scan, self._error_centre(scan, rng), aug_seed)
        if self.kind == "balanced":
            positive = k % (self.balance_ratio + 1) == 0
        else:
            positive = rng.random() < self.pos_fraction
        if self.target == "label":
            classes = sorted(self.pools)
            # two classes: the positive class (1) with the sampler's rule; more: each class in turn
            label = int(positive) if classes == [0, 1] else classes[k % len(classes)]
            pool = self.pools[label]
            scan, centre = pool[int(rng.integers(len(pool)))]
            return PatchRequest(scan, self._jittered(scan, centre, rng), aug_seed, label=label)
        if positive and self.positives:
            scan = self.positive_scans[int(rng.integers(len(self.positive_scans)))]
            own = self.records[scan].positives
            centre = own[int(rng.integers(len(own)))]
            return PatchRequest(scan, self._jittered(scan, centre, rng), aug_seed)
        scan = int(rng.integers(len(self.records)))
        return PatchRequest(scan, self._anywhere(scan, rng), aug_seed)

    def _jittered(
        self, scan: int, centre: np.ndarray, rng: np.random.Generator
    ) -> tuple[float, float, float]:
        half = self.extent[scan] / 2
        offset = rng.uniform(-1, 1, 3) * half * self.jitter
        return tuple(float(v) for v in np.asarray(centre) + offset)  # type: ignore[return-value]

    def _anywhere(self, scan: int, rng: np.random.Generator) -> tuple[float, float, float]:
        shape = np.asarray(self.records[scan].shape, dtype=float)
        return tuple(float(v) for v in rng.uniform(0, 1, 3) * (shape - 1))  # type: ignore[return-value]

    def _error_centre(self, scan: int, rng: np.random.Generator) -> tuple[float, float, float]:
        if self.error_maps is None or scan not in self.error_maps.maps:
            return self._anywhere(scan, rng)
        grid = self.error_maps.maps[scan]
        weights = np.maximum(grid.ravel().astype(np.float64), 0) + ERROR_FLOOR
        cell = int(rng.choice(weights.size, p=weights / weights.sum()))
        where = np.asarray(np.unravel_index(cell, grid.shape), dtype=float)
        centre = (where + rng.uniform(0, 1, 3)) * self.error_maps.cell[scan]
        shape = np.asarray(self.records[scan].shape, dtype=float)
        return tuple(float(v) for v in np.clip(centre, 0, shape - 1))  # type: ignore[return-value]

    # -- streams -----------------------------------------------------------------------------------------
    def stream(self, start_step: int, per_step: int, rank: int = 0, world: int = 1) -> Iterator[PatchRequest]:
        """The requests of ``rank`` from optimizer step ``start_step`` on, ``per_step`` per rank and step."""
        for step in count(start_step):
            base = step * per_step * world + rank * per_step
            for j in range(per_step):
                yield self.request(base + j)


def class_pools(records: Sequence[ScanRecord]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Classification: every candidate as (scan, centre), by class."""
    pools: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, record in enumerate(records):
        for centre, label in zip(record.candidates, record.candidate_labels, strict=True):
            pools.setdefault(int(label), []).append((i, centre))
    return pools


def validation_requests(
    records: Sequence[ScanRecord], n: int, seed: int, extent: Sequence[np.ndarray], target: str
) -> list[PatchRequest]:
    """A fixed validation set, no augmentation. Segmentation: up to half the patches on nodules, the rest
    anywhere. Classification: up to ``n`` distinct candidates, the classes taken in turn (each in a random
    order) until ``n`` or all are in, so a rare class is not swamped (all of them when there are fewer)."""
    rng = np.random.default_rng([seed, 7919])
    if target == "label":
        pools = class_pools(records)
        queues = [[pool[int(j)] for j in rng.permutation(len(pool))] for _, pool in sorted(pools.items())]
        labels = sorted(pools)
        requests: list[PatchRequest] = []
        depth = 0
        while len(requests) < n and any(depth < len(q) for q in queues):
            for label, queue in zip(labels, queues, strict=True):
                if depth < len(queue) and len(requests) < n:
                    scan, centre = queue[depth]
                    requests.append(PatchRequest(scan, _point(centre), 0, label=label, augment=False))
            depth += 1
        return requests
    positives = [(i, c) for i, r in enumerate(records) for c in r.positives]
    requests = []
    order = rng.permutation(len(positives))
    for j in range(min(len(positives), (n + 1) // 2)):
        scan, centre = positives[int(order[j])]
        requests.append(PatchRequest(scan, _point(centre), 0, label=1, augment=False))
    while len(requests) < n:
        scan = int(rng.integers(len(records)))
        shape = np.asarray(records[scan].shape, dtype=float)
        requests.append(PatchRequest(scan, _point(rng.uniform(0, 1, 3) * (shape - 1)), 0, augment=False))
    return requests


def _point(centre: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in centre)  # type: ignore[return-value]
