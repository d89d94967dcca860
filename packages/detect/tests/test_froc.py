"""FROC / CPM by the LUNA16 rules on a small case worked out by hand."""

import pytest

from lungtk.core import LungtkError
from lungtk.detect.froc import FP_RATES, Lesion, Mark, froc, plot_froc

NODULES = [
    Lesion("A", (0.0, 0.0, 0.0), 10.0),
    Lesion("A", (50.0, 0.0, 0.0), 6.0),
    Lesion("B", (30.0, 0.0, 0.0), 8.0),
]
EXCLUDED = [Lesion("A", (-50.0, 0.0, 0.0), -1.0)]  # no diameter: 10 mm
MARKS = [
    Mark("A", (0.0, 0.0, 0.0), 0.9),  # hits nodule 1
    Mark("A", (1.0, 1.0, 1.0), 0.8),  # hits nodule 1 again: not a false positive, not a second hit
    Mark("A", (-50.0, 2.0, 0.0), 0.95),  # on the excluded finding: ignored
    Mark("A", (100.0, 100.0, 100.0), 0.7),  # false positive
    Mark("A", (50.0, 2.9, 0.0), 0.4),  # 2.9 mm from nodule 2 (radius 3): a hit
    Mark("B", (0.0, 0.0, 0.0), 0.6),  # false positive
    Mark("B", (30.0, 3.9, 0.0), 0.3),  # 3.9 mm from nodule 3 (radius 4): a hit
]


def test_hand_checked_case():
    result = froc(MARKS, NODULES, EXCLUDED)
    # Counted, by probability: 0.9 TP, 0.7 FP, 0.6 FP, 0.4 TP, 0.3 TP over 2 scans and 3 nodules. The
    # curve: (0 FP/scan, 1/3), (0.5, 1/3), (1.0, 1/3), (1.0, 2/3), (1.0, 1).
    assert result.scans == 2 and result.nodules == 3 and result.detected == 3 and result.false_positives == 2
    expected = {0.125: 1 / 3, 0.25: 1 / 3, 0.5: 1 / 3, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0, 8.0: 1.0}
    assert result.sensitivity_at == pytest.approx(expected)
    assert result.cpm == pytest.approx((3 * (1 / 3) + 4 * 1.0) / 7)


def test_excluded_marks_are_ignored_and_missing_ones_become_false_positives():
    without_excluded = froc(MARKS, NODULES)  # the 0.95 mark now counts as a false positive
    assert without_excluded.false_positives == 3
    assert without_excluded.sensitivity_at[0.125] == 0.0  # the top mark is a false positive


def test_only_100_marks_per_scan_count_and_scans_normalise_fps():
    many = [Mark("A", (200.0 + i, 0.0, 0.0), 0.99) for i in range(150)] + [Mark("A", (0.0, 0.0, 0.0), 0.5)]
    result = froc(many, NODULES[:1])
    assert result.false_positives == 100 and result.detected == 0  # the hit ranked 151st is dropped
    more_scans = froc(MARKS, NODULES, EXCLUDED, scans=["A", "B", "C", "D"])
    assert more_scans.sensitivity_at[0.5] == 1.0  # 2 false positives over 4 scans is 0.5 per scan
    with pytest.raises(LungtkError, match="outside the evaluated set"):
        froc(MARKS, NODULES, scans=["A"])


def test_plot(tmp_path):
    path = plot_froc(froc(MARKS, NODULES, EXCLUDED), tmp_path / "froc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(FP_RATES) == {0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0}
