"""``lungtk data info|split`` on a fake LUNA16 folder, as a user runs them."""

import csv
import io
import json

import numpy as np

from lungtk.core import Geometry
from lungtk.ct_io import write_image


def fake_luna(root, n=6):
    geometry = Geometry(np.zeros(3), np.ones(3), np.eye(3))
    uids = [f"1.2.840.{i}" for i in range(n)]
    for i, uid in enumerate(uids):
        write_image(root / f"subset{i % 2}" / f"{uid}.mhd", np.zeros((2, 3, 4), np.int16), geometry)
    (root / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n" + "".join(f"{u},1,1,0.5,5\n" for u in uids[:3])
    )
    return uids


def test_data_info_and_split(tmp_path, lungtk_cli):
    uids = fake_luna(tmp_path / "luna")
    info = json.loads(lungtk_cli("data", "info", tmp_path / "luna", "--json", check=0).stdout)
    assert info["dataset"] == "luna16" and info["scans_on_disk"] == 6 and info["annotations"] == 3

    proc = lungtk_cli(
        "data", "split", tmp_path / "luna", "--val", "0.5", "--test", "0", "--seed", "2", check=0
    )
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert sorted(r["uid"] for r in rows) == sorted(uids)
    assert sorted(r["split"] for r in rows) == ["train"] * 3 + ["val"] * 3

    out = tmp_path / "folds.csv"
    lungtk_cli("data", "split", tmp_path / "luna", "--folds", "3", "--out", out, check=0)
    folds = [r["split"] for r in csv.DictReader(out.open())]
    assert sorted(folds) == ["fold0", "fold0", "fold1", "fold1", "fold2", "fold2"]


def test_data_errors_are_one_line(tmp_path, lungtk_cli):
    (tmp_path / "empty").mkdir()
    proc = lungtk_cli("data", "info", tmp_path / "empty", check=1)
    assert "not a LUNA16" in proc.stderr and "Traceback" not in proc.stderr
    fake_luna(tmp_path / "luna")
    proc = lungtk_cli("data", "split", tmp_path / "luna", "--val", "0.7", "--test", "0.5", check=1)
    assert "fractions" in proc.stderr


def test_data_split_refuses_fractions_and_folds_that_make_no_split(tmp_path, lungtk_cli):
    fake_luna(tmp_path / "luna")
    for args, message in (
        (("--val", "-0.5"), "--val: -0.5 is out of range; use a fraction of the patients from 0 to 1"),
        (("--val", "nan"), "--val: nan is not a finite number"),
        (("--test", "2"), "--test: 2 is out of range; use a fraction"),
        (("--val", "0.6", "--test", "0.6"), "add up to more than 1"),
        (("--folds", "-1"), "--folds: -1 is out of range"),
        (("--folds", "1"), "--folds: 1 is not a number of folds; use 2 or more"),
    ):
        proc = lungtk_cli("data", "split", tmp_path / "luna", *args, check=1)
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_data_info_on_luna16_with_lung_masks_and_duplicates(tmp_path, lungtk_cli):
    root = tmp_path / "flat"
    geometry = Geometry(np.zeros(3), np.ones(3), np.eye(3))
    write_image(root / "1.1.mhd", np.zeros((2, 3, 4), np.int16), geometry)
    write_image(root / "seg-lungs-LUNA16" / "1.1.mhd", np.zeros((2, 3, 4), np.uint8), geometry)
    info = json.loads(lungtk_cli("data", "info", root, "--json", check=0).stdout)
    assert info["dataset"] == "luna16" and info["scans_on_disk"] == 1
    write_image(root / "copy" / "1.1.nii.gz", np.zeros((2, 3, 4), np.int16), geometry)
    proc = lungtk_cli("data", "info", root, check=1)
    assert "two files have the series UID 1.1" in proc.stderr
