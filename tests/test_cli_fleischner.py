"""``lungtk fleischner`` as a user runs it: recommend, train / predict / eval, and bad input."""

import csv
import io
import json

import numpy as np

TEXTURES = ["ground-glass", "part-solid", "solid"]


def test_recommend_json_and_csv(tmp_path, lungtk_cli):
    table = tmp_path / "nodules.csv"
    table.write_text("diameter_mm,texture,patient,risk\n7,solid,A,low\n4,GGO,A,\n14,part-solid,B,\n,,C,\n")
    rows = json.loads(lungtk_cli("fleischner", "recommend", table, "--format", "json", check=0).stdout)
    assert [(r["patient"], r["category"], r["scheme"]) for r in rows] == [
        ("A", 2, "fleischner2017"),
        ("B", 2, "fleischner2017"),
        ("C", 0, "fleischner2017"),
    ]
    assert rows[0]["recommendation"] == "CT at 3-6 months, then consider CT at 18-24 months."
    proc = lungtk_cli("fleischner", "recommend", table, "--scheme", "lndb", "-f", "csv", check=0)
    got = {r["patient"]: int(r["category"]) for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert got == {"A": 1, "B": 2, "C": 0}
    out = tmp_path / "out.json"
    lungtk_cli("fleischner", "recommend", table, "-f", "json", "--out", out, check=0)
    assert len(json.loads(out.read_text())) == 3


def test_recommend_bad_input_is_one_line(tmp_path, lungtk_cli):
    table = tmp_path / "bad.csv"
    table.write_text("patient,texture,volume_mm3\nA,solid,120\nB,crunchy,80\n")
    proc = lungtk_cli("fleischner", "recommend", table, check=1)
    assert "bad.csv: line 3, column 'texture': unknown texture 'crunchy'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    table.write_text("patient,texture\nA,solid\n")
    assert (
        "needs a 'volume_mm3' or a 'diameter_mm'"
        in lungtk_cli("fleischner", "recommend", table, check=1).stderr
    )


def write_lndb_like(tmp_path, n, seed):
    """Nodule table + reference categories computed by the LNDb rules through the CLI itself."""
    rng = np.random.default_rng(seed)
    lines = ["patient,volume_mm3,texture"]
    for i in range(n):
        lines += [
            f"p{i},{rng.choice([40, 160, 600])},{TEXTURES[rng.integers(3)]}"
            for _ in range(rng.integers(1, 4))
        ]
    table = tmp_path / f"nodules{seed}.csv"
    table.write_text("\n".join(lines) + "\n")
    return table


def test_train_predict_eval(tmp_path, lungtk_cli):
    train, test = write_lndb_like(tmp_path, 150, 0), write_lndb_like(tmp_path, 60, 1)
    for table in (train, test):
        proc = lungtk_cli("fleischner", "recommend", table, "--scheme", "lndb", "-f", "csv", check=0)
        labels = tmp_path / f"{table.stem}-labels.csv"
        labels.write_text(proc.stdout)  # patient,...,category,... columns: a valid label file
    model = tmp_path / "forest.joblib"
    lungtk_cli(
        "fleischner",
        "train",
        train,
        "--labels",
        tmp_path / "nodules0-labels.csv",
        "--out",
        model,
        "--trees",
        "40",
        check=0,
    )
    preds = json.loads(
        lungtk_cli("fleischner", "predict", test, "--model", model, "-f", "json", check=0).stdout
    )
    assert len(preds) == 60 and all(abs(sum(p["probabilities"]) - 1) < 1e-6 for p in preds)
    summary = json.loads(
        lungtk_cli(
            "fleischner",
            "eval",
            test,
            "--labels",
            tmp_path / "nodules1-labels.csv",
            "--model",
            model,
            "--json",
            check=0,
        ).stdout
    )
    assert summary["patients"] == 60 and summary["balanced_accuracy"] > 0.8
    # The rules scored against their own output agree perfectly.
    rules = json.loads(
        lungtk_cli(
            "fleischner", "eval", test, "--labels", tmp_path / "nodules1-labels.csv", "--json", check=0
        ).stdout
    )
    assert rules["kappa_quadratic"] == 1.0
    assert (
        "Traceback"
        not in lungtk_cli("fleischner", "predict", test, "--model", tmp_path / "none", check=1).stderr
    )


def test_eval_on_an_lndb_folder(tmp_path, lungtk_cli):
    root = tmp_path / "LNDb" / "trainset_csv"
    root.mkdir(parents=True)
    (root / "trainNodules.csv").write_text(
        "LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text\n"
        "1,1,1,0,0,0,1,400,5\n1,2,1,1,0,0,1,380,5\n"  # one large solid nodule, two readers -> 3
        "2,1,1,0,0,0,1,50,1\n2,1,2,50,0,0,1,60,1\n"  # two small ground-glass nodules -> 2
        "3,1,1,0,0,0,0,0,0\n"  # a non-nodule only -> 0
    )
    (root / "trainFleischner.csv").write_text("LNDbID,Fleischner\n1,3\n2,2\n3,0\n")
    summary = json.loads(
        lungtk_cli("fleischner", "eval", "--lndb", tmp_path / "LNDb", "--json", check=0).stdout
    )
    assert summary["patients"] == 3 and summary["kappa_quadratic"] == 1.0
