"""``lungtk eval froc`` on a phantom's own ground truth: a perfect detector and a useless one."""

import csv
import json


def test_froc_of_perfect_and_decoy_only_detectors(tmp_path, lungtk_cli):
    out = tmp_path / "ph"
    lungtk_cli("phantom", "--out", out, "--n", "3", "--seed", "2", "--shape", "64,128,128", check=0)
    rows = list(csv.DictReader((out / "candidates.csv").open()))
    header = "seriesuid,coordX,coordY,coordZ,probability\n"
    perfect = tmp_path / "perfect.csv"
    perfect.write_text(
        header
        + "".join(
            f"{r['seriesuid']},{r['coordX']},{r['coordY']},{r['coordZ']},{0.9 if r['class'] == '1' else 0.1}\n"
            for r in rows
        )
    )
    decoys = tmp_path / "decoys.csv"
    decoys.write_text(
        header
        + "".join(
            f"{r['seriesuid']},{r['coordX']},{r['coordY']},{r['coordZ']},0.5\n"
            for r in rows
            if r["class"] == "0"
        )
    )
    plot = tmp_path / "froc.png"
    good = lungtk_cli(
        "eval",
        "froc",
        "--findings",
        perfect,
        "--annotations",
        out / "annotations.csv",
        "--plot",
        plot,
        check=0,
    )
    assert "CPM 1.0000" in good.stdout and plot.stat().st_size > 1000
    bad = json.loads(
        lungtk_cli(
            "eval", "froc", "--findings", decoys, "--annotations", out / "annotations.csv", "--json", check=0
        ).stdout
    )
    assert bad["cpm"] == 0.0 and bad["detected"] == 0


def test_froc_bad_input(tmp_path, lungtk_cli):
    bad = tmp_path / "f.csv"
    bad.write_text("seriesuid,coordX,coordY,coordZ\n1,2,3,4\n")
    ann = tmp_path / "a.csv"
    ann.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1,2,3,4,5\n")
    proc = lungtk_cli("eval", "froc", "--findings", bad, "--annotations", ann, check=1)
    assert "no column 'probability'" in proc.stderr and "Traceback" not in proc.stderr
