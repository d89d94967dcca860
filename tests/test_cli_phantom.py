"""``lungtk phantom`` end to end: the files load as a LUNA16 folder, and the follow-up categories it
writes agree with ``lungtk fleischner`` run on its own nodule table."""

import csv
import io
import json

import numpy as np
from PIL import Image

from lungtk.ct_io.datasets import open_dataset

OUTLINE_RGB = (255, 64, 64)  # nodule outlines in the previews


def test_phantom_writes_a_luna16_folder_with_consistent_fleischner_truth(tmp_path, lungtk_cli):
    out = tmp_path / "ph"
    # in two worker processes (packages/phantom/tests/test_phantom_jobs.py: the same files as in one)
    options = ("--n", "3", "--seed", "4", "--shape", "64,128,128", "--preview", "--jobs", "2")
    proc = lungtk_cli("phantom", "--out", out, *options, check=0)
    assert proc.stdout.strip() == str(out)
    index = open_dataset(out)
    assert index.name == "luna16" and len(index.on_disk()) == 3
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["seed"] == 4 and len(meta["scans"]) == 3
    _check_previews(out, meta)

    truth = {r["seriesuid"]: r for r in csv.DictReader((out / "fleischner.csv").open())}
    nodules = out / "nodules.csv"
    got = lungtk_cli("fleischner", "recommend", nodules, "--scheme", "lndb", "-f", "csv", check=0).stdout
    for row in csv.DictReader(io.StringIO(got)):
        assert int(row["category"]) == int(truth[row["patient"]]["lndb"])
    # Scans without nodules are not in nodules.csv; their category is 0.
    listed = {r["patient"] for r in csv.DictReader(io.StringIO(got))}
    assert listed == {r["seriesuid"] for r in csv.DictReader(nodules.open())} and listed < set(truth)
    assert all(int(r["lndb"]) == 0 for uid, r in truth.items() if uid not in listed)


def _check_previews(out, meta):
    """One PNG per scan: its axial slice (2x) beside its coronal slice at the voxels' true aspect, with the
    outline of the nodule they pass through, in red, exactly when the scan has nodules."""
    with_nodules = {r["seriesuid"] for r in csv.DictReader((out / "nodules.csv").open())}
    assert 0 < len(with_nodules) < 3  # seed 4 gives scans with and without nodules: both cases are seen
    previews = {p.stem: p for p in (out / "previews").glob("*.png")}
    assert set(previews) == {s["seriesuid"] for s in meta["scans"]}
    for scan in meta["scans"]:
        image = np.asarray(Image.open(previews[scan["seriesuid"]]).convert("RGB"))
        slices, _rows, cols = scan["shape"]
        sx, _sy, sz = scan["spacing"]
        assert image.shape[1] == 2 * (2 * cols + 4)  # two panels of 2 px per column and a 4 px gap
        assert abs(image.shape[0] - max(2 * cols, 2 * slices * sz / sx)) <= 1
        assert image.std() > 20  # anatomy, not a blank
        outline = np.all(image == OUTLINE_RGB, axis=-1).sum()
        assert (outline > 0) == (scan["seriesuid"] in with_nodules), scan["seriesuid"]


def test_phantom_bad_options_are_one_line(tmp_path, lungtk_cli):
    proc = lungtk_cli("phantom", "--out", tmp_path / "x", "--shape", "64,128", check=1)
    assert (
        "--shape takes 3 numbers separated by commas, got 2" in proc.stderr and "Traceback" not in proc.stderr
    )
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = lungtk_cli("phantom", "--out", blocker / "sub", "--shape", "64,96,96", check=1)
    assert "cannot create the output folder" in proc.stderr


def test_phantom_refuses_bad_numbers_and_a_folder_of_another_set(tmp_path, lungtk_cli):
    for args, message in (
        (("--seed", "-1"), "--seed: -1 is out of range; use a whole number from 0 to 4294967295"),
        (("--spacing", "nan,1,1"), "--spacing (x): 'nan' is not a finite number"),
        (("--shape", "32.5,64,64"), "--shape (slices): '32.5' is not a whole number"),
    ):
        proc = lungtk_cli("phantom", "--out", tmp_path / "x", "--shape", "32,64,64", *args, check=1)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines[-1] == f"error: {lines[-1][7:]}" and message in lines[-1], proc.stderr
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "set"
    lungtk_cli(
        "phantom", "--out", out, "--shape", "32,64,64", "--shapes", "parametric", "--seed", "1", check=0
    )
    proc = lungtk_cli(
        "phantom", "--out", out, "--shape", "32,64,64", "--shapes", "parametric", "--seed", "2", check=1
    )
    assert "holds another phantom set (seed 1 there, 2 now)" in proc.stderr and "--overwrite" in proc.stderr
    proc = lungtk_cli(
        "phantom", "--out", out, "--shape", "32,64,64", "--shapes", "parametric", "--seed", "1", check=0
    )
    assert "already holds this phantom set" in proc.stderr and proc.stdout.strip() == str(out)
