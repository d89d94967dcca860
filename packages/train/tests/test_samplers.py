from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from lungtk.core import LungtkError
from lungtk.train.data.samplers import ErrorMaps, PatchSampler, validation_requests
from lungtk.train.data.sources import ScanRecord


def _records():
    a = ScanRecord(
        "a", Path("a.mhd"), (40, 80, 80), (1.0, 1.0, 1.0), positives=np.array([[20.0, 40, 40], [10, 10, 10]])
    )
    b = ScanRecord("b", Path("b.mhd"), (40, 80, 80), (1.0, 1.0, 1.0))
    c = ScanRecord(
        "c",
        Path("c.mhd"),
        (40, 80, 80),
        (1.0, 1.0, 1.0),
        candidates=np.array([[5.0, 5, 5], [6, 6, 6], [7, 7, 7]]),
        candidate_labels=np.array([1, 0, 0]),
    )
    return [a, b, c]


def _sampler(kind="positive", target="mask", **kw):
    records = _records()
    return PatchSampler(records, kind=kind, seed=5, extent=[np.full(3, 16.0)] * 3, target=target, **kw)


def test_a_sample_depends_on_the_seed_and_its_number_only():
    s, t = _sampler(), _sampler()
    assert [s.request(k) for k in range(50)] == [t.request(k) for k in range(50)]
    assert s.request(3) != s.request(4)
    other = PatchSampler(_records(), kind="positive", seed=6, extent=[np.full(3, 16.0)] * 3)
    assert other.request(3) != s.request(3)


def test_streams_resume_at_a_step_and_ranks_take_disjoint_samples():
    s = _sampler()
    whole = list(islice(s.stream(0, per_step=3), 30))
    assert list(islice(s.stream(4, per_step=3), 18)) == whole[12:]
    r0 = list(islice(s.stream(0, per_step=3, rank=0, world=2), 15))
    r1 = list(islice(s.stream(0, per_step=3, rank=1, world=2), 15))
    single = list(islice(s.stream(0, per_step=6), 30))  # one process with the global batch
    merged = [x for step in range(5) for x in r0[3 * step : 3 * step + 3] + r1[3 * step : 3 * step + 3]]
    assert merged == single
    assert not {(r.scan, r.centre) for r in r0} & {(r.scan, r.centre) for r in r1}


def test_positive_fraction_and_jitter():
    s = _sampler(pos_fraction=0.5, jitter=0.5)
    requests = [s.request(k) for k in range(2000)]
    near = [
        r
        for r in requests
        if r.scan == 0 and min(np.abs(np.subtract(r.centre, p)).max() for p in s.records[0].positives) <= 4.0
    ]
    assert 0.42 < len(near) / len(requests) < 0.58  # the positives plus a few random centres near them
    assert all(r.label == -1 for r in requests)


def test_balanced_alternates_classes_as_seed_001():
    s = _sampler("balanced", target="label", balance_ratio=2)
    labels = [s.request(k).label for k in range(12)]
    assert labels == [1, 0, 0] * 4
    assert all(s.request(k).scan == 2 for k in range(12))


def test_isample_draws_where_the_error_is():
    s = _sampler("isample")
    grid = np.zeros((2, 4, 4), dtype=np.float32)
    grid[1, 3, 0] = 1.0
    s.error_maps = ErrorMaps(
        {i: grid for i in range(3)}, {i: np.array([20.0, 20, 20]) for i in range(3)}, step=0
    )
    centres = np.array([s.request(k).centre for k in range(400)])
    inside = np.all((centres >= [20, 60, 0]) & (centres < [40, 80, 20]), axis=1)
    assert inside.mean() > 0.9
    with pytest.raises(LungtkError, match="segmentation"):
        _sampler("isample", target="label")


def test_validation_patches_are_fixed_and_not_augmented():
    records = _records()
    a = validation_requests(records, 6, seed=0, extent=[np.full(3, 16.0)] * 3, target="mask")
    assert a == validation_requests(records, 6, seed=0, extent=[np.full(3, 16.0)] * 3, target="mask")
    assert len(a) == 6 and not any(r.augment for r in a)
    assert sum(r.label == 1 for r in a) == 2  # both positives, the rest anywhere
    labelled = validation_requests(records, 4, seed=0, extent=[np.full(3, 16.0)] * 3, target="label")
    assert sorted(r.label for r in labelled) == [0, 0, 1]  # each candidate once: all three are in
    two = validation_requests(records, 2, seed=0, extent=[np.full(3, 16.0)] * 3, target="label")
    assert sorted(r.label for r in two) == [0, 1]  # the classes in turn


def _three_class_records():
    centres = np.arange(30, dtype=float).reshape(10, 3)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 0])  # class 2 is rare
    return [
        ScanRecord(
            "t", Path("t.mhd"), (40, 80, 80), (1.0, 1.0, 1.0), candidates=centres, candidate_labels=labels
        )
    ]


@pytest.mark.parametrize("kind", ["positive", "balanced"])
def test_three_classes_are_drawn_in_turn(kind):
    records = _three_class_records()
    s = PatchSampler(records, kind=kind, seed=1, extent=[np.full(3, 8.0)], target="label")
    requests = [s.request(k) for k in range(30)]
    assert [r.label for r in requests] == [0, 1, 2] * 10
    for r in requests:  # the centre is a candidate of that class, jittered within the extent's half
        options = records[0].candidates[records[0].candidate_labels == r.label]
        assert np.abs(options - np.asarray(r.centre)).max(axis=1).min() <= 4.0
    val = validation_requests(records, 5, seed=0, extent=[np.full(3, 8.0)], target="label")
    assert sorted(r.label for r in val) == [0, 0, 1, 1, 2]
    assert len({r.centre for r in val}) == 5
