"""FROC / CPM by the LUNA16 rules on a small case worked out by hand."""

import pytest

from lungtk.core import LungtkError
from lungtk.detect.froc import (
    FP_RATES,
    Lesion,
    Mark,
    froc,
    plot_froc,
    read_lesions,
    read_marks,
    read_seriesuids,
)

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


# -- bad input: every number is checked where it enters, and named -----------------------------------------
HEADER = "seriesuid,coordX,coordY,coordZ"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("s1,0,0,0,2.0", r"line 2, column 'probability': '2.0' is not a probability"),
        ("s1,0,0,0,-0.5", r"line 2, column 'probability': '-0.5' is not a probability"),
        ("s1,0,0,0,nan", r"line 2, column 'probability': 'nan' is not a finite number"),
        ("s1,0,0,0,inf", r"column 'probability': 'inf' is not a finite number"),
        ("s1,nan,0,0,0.5", r"line 2, column 'coordX': 'nan' is not a finite number"),
        ("s1,0,-Infinity,0,0.5", r"column 'coordY': '-Infinity' is not a finite number"),
        ("s1,0,0,1e300,0.5", r"column 'coordZ': '1e300' is out of range"),
        ("s1,0,0,0,[/x]", r"column 'probability': '\[/x\]' is not a number"),
        (",0,0,0,0.5", r"line 2, column 'seriesuid': is empty"),
        ("s1,0,0,0,", r"line 2, column 'probability': is empty"),
    ],
)
def test_bad_marks_name_file_line_and_column(tmp_path, row, message):
    path = tmp_path / "marks.csv"
    path.write_text(f"{HEADER},probability\n{row}\n")
    with pytest.raises(LungtkError, match=message):
        read_marks(path)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("inf", "'inf' is not a finite number"),
        ("nan", "'nan' is not a finite number"),
        ("-5", "'-5' is out of range; use a positive number"),
        ("0", "'0' is out of range"),
        ("1e9", "'1e9' is out of range"),
    ],
)
def test_bad_nodule_diameters(tmp_path, cell, message):
    path = tmp_path / "annotations.csv"
    path.write_text(f"{HEADER},diameter_mm\ns1,0,0,0,5\n\ns1,9,9,9,{cell}\n")
    with pytest.raises(LungtkError, match=rf"annotations.csv: line 4, column 'diameter_mm': {message}"):
        read_lesions(path)


def test_excluded_findings_may_lack_a_diameter_but_not_be_infinite(tmp_path):
    path = tmp_path / "excluded.csv"
    path.write_text(f"{HEADER},diameter_mm\ns1,0,0,0,-1\ns1,5,5,5,\ns1,1,1,1,4\n")
    assert [e.diameter_mm for e in read_lesions(path, excluded=True)] == [-1.0, -1.0, 4.0]
    path.write_text(f"{HEADER},diameter_mm\ns1,0,0,0,inf\n")
    with pytest.raises(LungtkError, match="'inf' is not a finite number"):
        read_lesions(path, excluded=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Mark("A", (0.0, 0.0, float("nan")), 0.5),
        lambda: Mark("A", (0.0, 0.0, 0.0), 2.0),
        lambda: Mark("A", (0.0, 0.0, 0.0), float("nan")),
        lambda: Mark("", (0.0, 0.0, 0.0), 0.5),
        lambda: Mark("A", (0.0, 0.0), 0.5),
        lambda: Lesion("A", (0.0, 0.0, 0.0), float("inf")),
        lambda: Lesion("A", (float("inf"), 0.0, 0.0), 5.0),
        lambda: froc(MARKS, [Lesion("A", (0.0, 0.0, 0.0), -1.0)]),
    ],
)
def test_the_api_checks_what_it_is_given(make):
    with pytest.raises(LungtkError):
        make()


def test_seriesuid_files(tmp_path):
    path = tmp_path / "uids.csv"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(LungtkError, match="not a UTF-8 text file"):
        read_seriesuids(path)
    path.write_text("\n\n")
    with pytest.raises(LungtkError, match="lists no series UIDs"):
        read_seriesuids(path)
    path.write_text("seriesuid\nA\n\nB\n")
    assert read_seriesuids(path) == ["A", "B"]
    with pytest.raises(LungtkError, match="is a folder"):
        read_seriesuids(tmp_path)
