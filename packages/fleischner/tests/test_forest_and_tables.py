"""The learned predictor (seed 000), and reading nodule tables."""

import json

import numpy as np
import pytest

from lungtk.core import LungtkError
from lungtk.fleischner import Nodule, Texture, balanced_accuracy, read_cases, recommend_cases, score
from lungtk.fleischner.features import patient_features
from lungtk.fleischner.forest import FleischnerForest

TEXTURES = list(Texture)


def random_patients(n, seed):
    rng = np.random.default_rng(seed)
    return {
        f"p{seed}-{i}": [
            Nodule(TEXTURES[rng.integers(3)], volume_mm3=float(rng.choice([40.0, 160.0, 600.0])))
            for _ in range(rng.integers(0, 4))
        ]
        for i in range(n)
    }


def test_features_are_counts_per_volume_class_and_texture():
    nodules = [
        Nodule(Texture.SOLID, volume_mm3=50),
        Nodule(Texture.SOLID, volume_mm3=100),
        Nodule(Texture.GROUND_GLASS, volume_mm3=250),
        Nodule(Texture.PART_SOLID, diameter_mm=10, calcified=True),
    ]
    assert patient_features(nodules).tolist() == [1, 1, 1, 1, 0, 2]


def test_forest_learns_the_lndb_rules_and_round_trips(tmp_path):
    train, test = random_patients(400, 0), random_patients(200, 1)
    labels = {p: score(ns).category for p, ns in train.items()}
    forest = FleischnerForest.fit(train, labels, n_estimators=50)
    proba = forest.predict_proba(test)
    predicted = [int(np.argmax(proba[p])) for p in test]
    truth = [score(ns).category for ns in test.values()]
    assert balanced_accuracy(truth, predicted) > 0.9  # the features determine the score almost fully
    path = forest.save(tmp_path / "model.joblib")
    again = FleischnerForest.load(path)
    for p in test:
        np.testing.assert_array_equal(again.predict_proba({p: test[p]})[p], proba[p])
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(LungtkError, match="not a model"):
        FleischnerForest.load(tmp_path / "junk.joblib")


def test_read_csv_columns_in_any_order(tmp_path):
    path = tmp_path / "nodules.csv"
    path.write_text(
        "texture,diameter_mm,patient,risk,calcified,solid_component_mm\n"
        "solid,7,A,low,,\n"
        "part-solid,12,B,,no,6.5\n"
        "GGO,4,B,,,\n"
        "solid,20,C,,yes,\n"
        ",,D,,,\n"
    )
    cases = read_cases(path)
    assert list(cases) == ["A", "B", "C", "D"]
    assert cases["A"].risk.value == "low" and cases["D"].nodules == []
    results = {r.patient: r for r in recommend_cases(cases)}
    assert results["A"].category == 1 and results["A"].risk == "low"
    assert results["B"].category == 3 and results["C"].category == 0 and results["D"].category == 0
    lndb = {r.patient: r.category for r in recommend_cases(cases, "lndb")}
    # A 7 mm sphere holds 179.6 mm3: one medium solid nodule -> 1; B: two non-solid nodules -> 2.
    assert lndb == {"A": 1, "B": 2, "C": 0, "D": 0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("texture,diameter_mm\nglassy,5\n", "line 2, column 'texture': unknown texture 'glassy'"),
        ("texture,diameter_mm\nsolid,-3\n", "line 2, column 'diameter_mm': '-3' is out of range"),
        ("texture,diameter_mm\nsolid,big\n", "line 2, column 'diameter_mm': 'big' is not a number"),
        ("patient,diameter_mm\nA,5\n", "no column 'texture'"),
        ("texture,size\nsolid,5\n", "needs a 'volume_mm3' or a 'diameter_mm' column"),
        ("texture,diameter_mm,volume_mm3\nsolid,,\n", "line 2: needs a diameter_mm or a volume_mm3"),
        ("texture,diameter_mm,calcified\nsolid,5,maybe\n", "column 'calcified': 'maybe' is not yes/no"),
        ("texture,diameter_mm,risk\nsolid,5,medium\n", "column 'risk': 'medium': use low or high"),
    ],
)
def test_bad_rows_name_line_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LungtkError, match=message):
        read_cases(path)


def test_findings_json_and_probabilities(tmp_path):
    path = tmp_path / "findings.json"
    findings = [
        {
            "seriesuid": "s1",
            "diameter_mm": 9.0,
            "volume_mm3": 380.0,
            "texture": {"solid": 0.8, "ground-glass": 0.2},
            "probability": 0.9,
        },
        {"seriesuid": "s1", "diameter_mm": 5.0, "volume_mm3": 60.0, "texture": "solid", "probability": 0.2},
    ]
    path.write_text(json.dumps({"findings": findings}))
    cases = read_cases(path)
    (lndb,) = recommend_cases(cases, "lndb")
    assert lndb.category == 3 and any("below nodule probability" in n for n in lndb.notes)
    # P(large solid present) = 0.9 -> category 3 (with or without the small one); else the small one
    # alone (0.1 * 0.2) or nothing (0.1 * 0.8) -> 0.
    np.testing.assert_allclose(lndb.probabilities, [0.1, 0.0, 0.0, 0.9], atol=1e-9)
    (f2017,) = recommend_cases(cases, "fleischner2017")
    assert f2017.category == 3 and f2017.nodules == 1


def test_read_labels_takes_lndb_columns_and_rejects_categories_outside_0_to_3(tmp_path):
    from lungtk.core import LungtkError
    from lungtk.fleischner.tables import read_labels

    lndb = tmp_path / "trainFleischner.csv"
    lndb.write_text("LNDbID,Fleischner\n1,0\n2,3.0\n")
    assert read_labels(lndb) == {"1": 0, "2": 3}
    for bad in ("4", "1.5", "-1", "x"):
        (tmp_path / "bad.csv").write_text(f"patient,category\na,{bad}\n")
        with pytest.raises(LungtkError, match=r"bad.csv: line 2, column 'category'"):
            read_labels(tmp_path / "bad.csv")


def test_cases_from_annotations_keep_every_scan_and_only_measured_nodules():
    from types import SimpleNamespace

    from lungtk.fleischner.tables import cases_from_annotations

    notes = [
        SimpleNamespace(uid="a", is_nodule=True, texture=5.0, volume_mm3=300.0, finding="1"),
        SimpleNamespace(uid="a", is_nodule=False, texture=5.0, volume_mm3=30.0, finding="2"),
        SimpleNamespace(uid="a", is_nodule=True, texture=None, volume_mm3=30.0, finding="3"),
    ]
    cases = cases_from_annotations(["a", "b"], notes)
    assert sorted(cases) == ["a", "b"] and cases["b"].nodules == []
    (nodule,) = cases["a"].nodules
    assert nodule.id == "1" and nodule.volume_mm3 == 300.0 and nodule.texture.value == "solid"
