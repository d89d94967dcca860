"""A second round of hostile input (issue 18): every number a command takes is checked where it enters and
named by its option; tables name the line a bad cell is on in the file; advice names only options the
running command has; input that would give a silent wrong answer (labels of other patients, locations of
other scans, no nodule to find, no prediction at all) is one line instead. Every file here is tiny."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from lungtk.core import Geometry
from lungtk.ct_io import write_image

GEOMETRY = Geometry(np.array([-10.0, -10.0, -20.0]), np.array([0.7, 0.7, 2.5]), np.eye(3))


def one_error_line(proc) -> str:
    """The last stderr line of a failed command, checked: an error line, no traceback, no 'internal
    error'."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode not in (0, 70), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


def tiny_scan(path, value=-800, shape=(4, 5, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.full(shape, value, np.int16), GEOMETRY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["pipeline", "run", "--preset", "classical", "s.mhd", "--out", "o", "--threshold", "nan"],
            "--threshold: nan is not a finite",
        ),
        (
            ["pipeline", "run", "--preset", "classical", "s.mhd", "--out", "o", "--threshold", "1.5"],
            "--threshold: 1.5 is not a prob",
        ),
        (
            ["pipeline", "run", "--preset", "classical", "s.mhd", "--out", "o", "--batch-size", "0"],
            "--batch-size: 0 is out of range",
        ),
        (
            ["pipeline", "run", "--preset", "classical", "s.mhd", "--out", "o", "--batch-size", "99999999"],
            "--batch-size: 99999999",
        ),
        (["demo", "--seed", "-1"], "--seed: -1 is out of range"),
        (["phantom", "--out", "p", "--n", "0"], "--n: 0 is out of range"),
        (["phantom", "--out", "p", "--n", str(10**9)], "--n: 1000000000 is out of range"),
        (["phantom", "--out", "p", "--seed", str(2**40)], "--seed: 1099511627776 is out of range"),
        (["phantom", "--out", "p", "--ggn-fraction", "nan"], "--ggn-fraction: nan is not a finite"),
        (["phantom", "--out", "p", "--ggn-fraction", "-0.5"], "--ggn-fraction: -0.5 is not a probability"),
        (
            ["phantom", "--out", "p", "--jobs", "-1"],
            "--jobs: -1 is out of range; use a whole number from 0 to 256",
        ),
        (["phantom", "--out", "p", "--jobs", str(10**6)], "--jobs: 1000000 is out of range"),
        (["data", "split", "d", "--val", "inf"], "--val: inf is not a finite"),
        (["data", "split", "d", "--test", "1.5"], "--test: 1.5 is out of range; use a fraction"),
        (["data", "split", "d", "--folds", "1"], "--folds: 1 is not a number of folds"),
        (["data", "split", "d", "--folds", "-3"], "--folds: -3 is out of range"),
        (["data", "split", "d", "--seed", "-1"], "--seed: -1 is out of range"),
        (["eval", "cls", "--findings", "f.csv", "--truth", "t", "--bootstrap", str(10**9)], "--bootstrap"),
    ],
)
def test_numeric_options_are_checked_and_named_before_any_work(tmp_path, lungtk_cli, args, message):
    paths = {"s.mhd", "o", "p", "d", "f.csv", "t"}
    line = one_error_line(lungtk_cli(*(tmp_path / a if a in paths else a for a in args)))
    assert message in line, line
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


def _two_series(folder):
    """A DICOM folder holding two series of one slice each (written by SimpleITK)."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, uid in enumerate(("1.2.3.71", "1.2.3.72")):
        image = sitk.GetImageFromArray(np.zeros((1, 4, 4), np.int16))[:, :, 0]
        for tag, value in {"0008|0060": "CT", "0020|000e": uid, "0020|0032": "0\\0\\0"}.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k}.dcm"))
        writer.Execute(image)


def test_cache_warm_gives_advice_for_its_own_options_only(tmp_path, lungtk_cli):
    _two_series(tmp_path / "dicom")
    proc = lungtk_cli("cache", "warm", tmp_path / "dicom")
    one_error_line(proc)
    assert "holds 2 DICOM series" in proc.stderr
    assert "--series UID`" in proc.stderr and "pick one with --series" not in proc.stderr


def test_cache_warm_goes_on_after_a_missing_scan(tmp_path, lungtk_cli):
    good = tiny_scan(tmp_path / "good.mhd")
    scans = tmp_path / "scans.txt"
    scans.write_text(f"{tmp_path / 'gone.mhd'}\n{good}\n")
    proc = lungtk_cli("cache", "warm", scans)
    assert "1 of 2 scan(s) could not be cached" in one_error_line(proc)
    assert "1 decoded" in proc.stderr and "gone.mhd: not found" in proc.stderr


def test_cache_folder_that_is_a_file_is_named_on_clear(tmp_path, lungtk_cli):
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    line = one_error_line(lungtk_cli("cache", "clear", env={"LUNGTK_CACHE_DIR": str(blocker)}))
    assert f"{blocker} is a file, not a folder; set LUNGTK_CACHE_DIR to a folder" in line


def test_eval_cls_truth_that_is_no_data_set_gives_no_layout_advice(tmp_path, lungtk_cli):
    (tmp_path / "t").mkdir()
    findings = tmp_path / "f.csv"
    findings.write_text("seriesuid,coordX,coordY,coordZ,probability\na,0,0,0,0.5\n")
    line = one_error_line(lungtk_cli("eval", "cls", "--findings", findings, "--truth", tmp_path / "t"))
    assert "not a LUNA16" in line and "--layout" not in line and "data set's top folder" in line
    line = one_error_line(lungtk_cli("data", "info", tmp_path / "t"))
    assert "name the layout with --layout" in line  # `data info` has the option


def test_convert_names_rows_by_their_file_line_and_file(tmp_path, lungtk_cli):
    first, second = tiny_scan(tmp_path / "d" / "1.1.mhd"), tiny_scan(tmp_path / "d" / "1.2.mhd")
    table = tmp_path / "points.csv"
    x, y, z = GEOMETRY.irc2xyz([1, 1, 1])
    table.write_text(
        f"seriesuid,coordX,coordY,coordZ\n\n{first.stem},{x},{y},{z}\n{second.stem},{x},{y},{z}\n\n"
        f"{first.stem},{x + 500},{y},{z}\n"
    )
    line = one_error_line(lungtk_cli("convert", "xyz2irc", "--ct-dir", tmp_path / "d", "--csv", table))
    assert f"{table}: line 6: (" in line and f"lies outside {tmp_path / 'd' / '1.1.mhd'}" in line
    table.write_text(f"seriesuid,coordX,coordY,coordZ\n{first.stem},{x},{y},{z}\n\n,{x},{y},{z}\n")
    line = one_error_line(lungtk_cli("convert", "xyz2irc", "--ct-dir", tmp_path / "d", "--csv", table))
    assert f"{table}: line 4: no 'seriesuid'" in line
    table.write_text(f"seriesuid,coordX,coordY,coordZ\n\n\n9.9,{x},{y},{z}\n")
    line = one_error_line(lungtk_cli("convert", "xyz2irc", "--ct-dir", tmp_path / "d", "--csv", table))
    assert f"{table}: line 4: no scan named 9.9.*" in line


def test_convert_image_refuses_a_series_for_a_single_file(tmp_path, lungtk_cli):
    scan = tiny_scan(tmp_path / "s.mhd")
    line = one_error_line(lungtk_cli("convert", "image", scan, tmp_path / "o.nii.gz", "--series", "1.2"))
    assert "is a single MHD image, not a DICOM folder" in line and "'1.2'" in line
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_percent_sign_in_a_scan_name_round_trips(tmp_path, lungtk_cli):
    scan = tiny_scan(tmp_path / "s.mhd", value=123)
    lungtk_cli("convert", "image", scan, tmp_path / "a%b.mhd", check=0)
    lungtk_cli("convert", "image", tmp_path / "a%b.mhd", tmp_path / "back.nii.gz", check=0)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "back.nii.gz"))).max() == 123


def test_pipeline_candidates_of_no_scan_in_the_run_are_refused(tmp_path, lungtk_cli):
    scan = tiny_scan(tmp_path / "1.1.mhd")
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("seriesuid,coordX,coordY,coordZ\n1.9.9,0,0,0\n1.9.8,0,0,0\n")
    line = one_error_line(
        lungtk_cli(
            "pipeline", "run", "--preset", "classical", scan, "--candidates", clicks, "--out", tmp_path / "o"
        )
    )
    assert "names none of the 1 scan(s) of this run" in line and "'1.9.9'" in line and "'1.1'" in line
    assert not (tmp_path / "o").exists()


def test_pipeline_classifier_twice_is_refused(tmp_path, lungtk_cli):
    scan = tiny_scan(tmp_path / "1.1.mhd")
    args = ["--classifier", "size", "--classifier", "size", "--out", tmp_path / "o"]
    line = one_error_line(lungtk_cli("pipeline", "run", "--preset", "classical", scan, *args))
    assert "classifier 'size' is given twice" in line


def test_pipeline_list_file_with_a_byte_order_mark(tmp_path, lungtk_cli):
    scan = tiny_scan(tmp_path / "1.1.mhd")
    listing = tmp_path / "scans.txt"
    listing.write_text(f"\ufeff{scan}\r\n", encoding="utf-8")
    proc = lungtk_cli(
        "pipeline",
        "run",
        "--preset",
        "classical",
        listing,
        "--out",
        tmp_path / "o",
        "--candidates",
        _click(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr


def _click(tmp_path):
    clicks = tmp_path / "clicks.csv"
    x, y, z = GEOMETRY.irc2xyz([2, 2, 3])
    clicks.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n1.1,{x},{y},{z},2\n")
    return clicks


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("Offset = 1e308 0 0", "origin must lie within"),
        ("ElementSpacing = 1 1 1e-300", "spacing must be between"),
        ("TransformMatrix = 1 0 0 0 1 0 0 0 5", "direction must hold unit vectors"),
    ],
)
def test_pipeline_scans_with_impossible_geometry_fail_at_reading(tmp_path, lungtk_cli, fields, message):
    key = fields.split(" = ")[0]
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 1 1 1\nDimSize = 6 5 4\n"
        "ElementType = MET_SHORT\nElementDataFile = s.raw\n"
    )
    header = "\n".join(fields if line.startswith(key) else line for line in header.splitlines()) + "\n"
    (tmp_path / "s.mhd").write_text(header)
    (tmp_path / "s.raw").write_bytes(np.zeros(120, "<i2").tobytes())
    proc = lungtk_cli("pipeline", "run", "--preset", "classical", tmp_path / "s.mhd", "--out", tmp_path / "o")
    assert "1 of 1 scan(s) failed" in one_error_line(proc)
    record = json.loads((tmp_path / "o" / "findings.json").read_text())["scans"][0]
    assert message in record["error"] and "bug" not in record["error"], record["error"]


def test_eval_froc_counts_only_the_nodules_of_the_evaluated_scans(tmp_path, lungtk_cli):
    marks = tmp_path / "marks.csv"
    marks.write_text("seriesuid,coordX,coordY,coordZ,probability\na,0,0,0,0.9\n")
    nodules = tmp_path / "annotations.csv"
    nodules.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\na,0,0,0,5\nb,0,0,0,5\nb,9,9,9,5\n")
    only_a = tmp_path / "seriesuids.csv"
    only_a.write_text("a\n")
    args = ["eval", "froc", "--findings", marks, "--annotations", nodules, "--json"]
    result = json.loads(lungtk_cli(*args, "--seriesuids", only_a, check=0).stdout)
    assert result["nodules"] == 1 and result["cpm"] == 1.0  # b's nodules are not missed by a's marks
    assert json.loads(lungtk_cli(*args, check=0).stdout)["nodules"] == 3


def test_eval_froc_without_a_nodule_to_find_is_refused(tmp_path, lungtk_cli):
    marks = tmp_path / "marks.csv"
    marks.write_text("seriesuid,coordX,coordY,coordZ,probability\na,0,0,0,0.9\n")
    nodules = tmp_path / "annotations.csv"
    nodules.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    line = one_error_line(lungtk_cli("eval", "froc", "--findings", marks, "--annotations", nodules))
    assert "no nodule to find" in line and "undefined" in line
    nodules.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\na,0,0,0,5\n")
    line = one_error_line(
        lungtk_cli(
            "eval", "froc", "--findings", marks, "--annotations", nodules, "--plot", tmp_path / "f.xyz"
        )
    )
    assert "--plot" in line and ".png" in line and not (tmp_path / "f.xyz").exists()


def test_eval_seg_with_no_prediction_for_any_truth_is_refused(tmp_path, lungtk_cli):
    tiny_scan(tmp_path / "truth" / "1.1.mhd", value=1)
    (tmp_path / "pred").mkdir()
    tiny_scan(tmp_path / "pred" / "9.9.mhd", value=1)
    line = one_error_line(
        lungtk_cli("eval", "seg", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    )
    assert "none of its files pairs with a truth" in line


def test_fleischner_labels_of_other_patients_are_refused_and_unlabelled_ones_named(tmp_path, lungtk_cli):
    nodules = tmp_path / "n.csv"
    nodules.write_text("patient,diameter_mm,texture\np1,7,solid\np2,4,solid\n")
    labels = tmp_path / "l.csv"
    labels.write_text("patient,category\nx1,1\nx2,0\n")
    line = one_error_line(
        lungtk_cli("fleischner", "train", nodules, "--labels", labels, "--out", tmp_path / "m.json")
    )
    assert "none of its 2 patient(s) appears in" in line and "'x1'" in line and "'p1'" in line
    assert not (tmp_path / "m.json").exists()
    labels.write_text("patient,category\np1,1\n")
    proc = lungtk_cli("fleischner", "eval", nodules, "--labels", labels, check=0)
    assert "1 patient(s) of" in proc.stderr and "'p2'" in proc.stderr
