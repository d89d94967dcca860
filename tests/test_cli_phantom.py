"""``lungtk phantom`` end to end: the files load as a LUNA16 folder, and the follow-up categories it
writes agree with ``lungtk fleischner`` run on its own nodule table."""

import csv
import io
import json

from lungtk.ct_io.datasets import open_dataset


def test_phantom_writes_a_luna16_folder_with_consistent_fleischner_truth(tmp_path, lungtk_cli):
    out = tmp_path / "ph"
    proc = lungtk_cli(
        "phantom", "--out", out, "--n", "3", "--seed", "4", "--shape", "64,128,128", "--preview", check=0
    )
    assert proc.stdout.strip() == str(out)
    index = open_dataset(out)
    assert index.name == "luna16" and len(index.on_disk()) == 3
    assert len(list((out / "previews").glob("*.png"))) == 3
    assert (out / "previews").stat().st_size > 0
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["seed"] == 4 and len(meta["scans"]) == 3

    truth = {r["seriesuid"]: r for r in csv.DictReader((out / "fleischner.csv").open())}
    nodules = out / "nodules.csv"
    got = lungtk_cli("fleischner", "recommend", nodules, "--scheme", "lndb", "-f", "csv", check=0).stdout
    for row in csv.DictReader(io.StringIO(got)):
        assert int(row["category"]) == int(truth[row["patient"]]["lndb"])
    # Scans without nodules are not in nodules.csv; their category is 0.
    listed = {r["patient"] for r in csv.DictReader(io.StringIO(got))}
    assert all(int(r["lndb"]) == 0 for uid, r in truth.items() if uid not in listed)


def test_phantom_bad_options_are_one_line(tmp_path, lungtk_cli):
    proc = lungtk_cli("phantom", "--out", tmp_path / "x", "--shape", "64,128", check=1)
    assert "--shape takes three positive numbers" in proc.stderr and "Traceback" not in proc.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = lungtk_cli("phantom", "--out", blocker / "sub", "--shape", "64,96,96", check=1)
    assert "cannot create the output folder" in proc.stderr
