"""``lungtk eval seg`` end to end on tiny label images in NIfTI and MHD."""

import csv
import json

import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io import write_image

GEOMETRY = Geometry((-10.0, 20.0, -100.0), (0.8, 0.7, 2.5))  # x, y, z
VOXEL_MM3 = 0.8 * 0.7 * 2.5


def _cube(lo, hi, label=1):
    m = np.zeros((8, 9, 10), dtype=np.uint8)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = label
    return m


@pytest.fixture
def folders(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    write_image(truth / "a.nii.gz", _cube((2, 2, 2), (6, 6, 6)), GEOMETRY)  # 64 voxels
    write_image(pred / "a.nii.gz", _cube((3, 2, 2), (7, 6, 6), label=2), GEOMETRY)  # 48 shared
    write_image(truth / "b.mhd", _cube((1, 1, 1), (3, 4, 5)), GEOMETRY)
    write_image(pred / "b.mhd", _cube((1, 1, 1), (3, 4, 5)), GEOMETRY)  # identical
    write_image(truth / "c.nii.gz", _cube((4, 4, 4), (6, 6, 6)), GEOMETRY)  # no prediction
    write_image(pred / "z.mhd", _cube((0, 0, 0), (2, 2, 2)), GEOMETRY)  # no truth
    return pred, truth


def test_eval_seg_table_json_and_csv(tmp_path, folders, lungtk_cli):
    pred, truth = folders
    per_case = tmp_path / "out" / "per_case.csv"
    table = lungtk_cli("eval", "seg", "--pred", pred, "--truth", truth, "--out", per_case, check=0)
    rows = dict(line.split(",") for line in table.stdout.splitlines()[1:])
    assert table.stdout.startswith("metric,value\n")
    assert rows["cases"] == "3" and rows["distance_undefined"] == "1"
    assert rows["dice"] == f"{(0.75 + 1.0 + 0.0) / 3:.4f}" and rows["jaccard_star"] == f"{1 - 1.6 / 3:.4f}"
    assert rows["missing_predictions"] == "1" and rows["extra_predictions"] == "1"
    assert "c" in table.stderr and "z" in table.stderr and "Traceback" not in table.stderr
    cases = {r["case"]: r for r in csv.DictReader(per_case.open())}
    assert list(cases) == ["a", "b", "c"]
    assert float(cases["a"]["dice"]) == pytest.approx(0.75) and cases["a"]["hd_mm"] == "2.5"
    assert cases["c"]["prediction_missing"] == "1" and cases["c"]["mad_mm"] == "inf"
    assert float(cases["c"]["volume_truth_mm3"]) == pytest.approx(8 * VOXEL_MM3)

    data = json.loads(lungtk_cli("eval", "seg", "--pred", pred, "--truth", truth, "--json", check=0).stdout)
    s = data["summary"]
    assert s["voxel_precision"] == pytest.approx((48 + 24) / (64 + 24))
    assert s["voxel_recall"] == pytest.approx((48 + 24) / (64 + 24 + 8))
    assert s["hd_mm"] == pytest.approx(2.5 / 2) and s["bias_mm3"] == pytest.approx(8 * VOXEL_MM3 / 3)
    assert data["missing_predictions"] == ["c"] and data["extra_predictions"] == ["z"]


def test_eval_seg_geometry_mismatch_is_one_line(tmp_path, folders, lungtk_cli):
    pred, truth = folders
    write_image(pred / "b.mhd", _cube((1, 1, 1), (3, 4, 5)), Geometry((-10.0, 20.0, -100.0), (0.8, 0.7, 2.0)))
    proc = lungtk_cli("eval", "seg", "--pred", pred, "--truth", truth, check=1)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.mhd" in errors[0] and "spacing" in errors[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
