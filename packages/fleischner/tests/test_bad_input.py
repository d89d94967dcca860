"""Out-of-range numbers never change a recommendation silently, and a model file never runs code."""

import json
import os
import pickle

import numpy as np
import pytest

from lungtk.core import LungtkError
from lungtk.fleischner import Nodule, Texture, read_cases, recommend_cases
from lungtk.fleischner.forest import FleischnerForest
from lungtk.fleischner.tables import read_labels


def table(tmp_path, text, name="nodules.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        ("diameter_mm,texture", "inf,solid", r"column 'diameter_mm': 'inf' is not a finite number"),
        ("diameter_mm,texture", "nan,solid", r"column 'diameter_mm': 'nan' is not a finite number"),
        ("diameter_mm,texture", "0,solid", r"column 'diameter_mm': '0' is out of range"),
        ("diameter_mm,texture", "5000,solid", r"column 'diameter_mm': '5000' is out of range"),
        ("volume_mm3,texture", "-100,solid", r"column 'volume_mm3': '-100' is out of range"),
        ("volume_mm3,texture", "1e400,solid", r"column 'volume_mm3': '1e400' is not a finite number"),
        ("diameter_mm,texture,nodule_prob", "7,solid,2", r"column 'nodule_prob': '2' is not a probability"),
        ("diameter_mm,texture,probability", "7,solid,NaN", r"column 'probability': 'NaN' is not a finite"),
        ("diameter_mm,texture,age", "7,solid,-4", r"column 'age': '-4' is out of range"),
        ("diameter_mm,texture,age", "7,solid,400", r"column 'age': '400' is out of range"),
        ("diameter_mm,texture", "7,9", r"column 'texture': unknown texture '9'"),
        ("diameter_mm,texture", "7,nan", r"column 'texture': unknown texture 'nan'"),
        (
            "diameter_mm,texture,solid_component_mm",
            "5,part-solid,50",
            r"column 'solid_component_mm': a solid part of 50 mm is larger than the nodule \(5 mm\)",
        ),
        (
            "volume_mm3,texture,solid_component_mm",
            "60,part-solid,30",
            r"column 'solid_component_mm': a solid part of 30 mm does not fit",
        ),
        (
            "diameter_mm,texture,solid_component_mm",
            "9,part-solid,-1",
            r"column 'solid_component_mm': '-1' is out",
        ),
    ],
)
def test_out_of_range_cells_are_named(tmp_path, header, row, message):
    path = table(tmp_path, f"patient,{header}\np1,{row}\n")
    with pytest.raises(LungtkError, match=rf"nodules.csv: line 2, {message}"):
        read_cases(path)


def test_a_solid_part_as_large_as_the_nodule_is_fine_and_drives_category_3(tmp_path):
    path = table(tmp_path, "patient,diameter_mm,texture,solid_component_mm\np1,8,part-solid,6\n")
    (result,) = recommend_cases(read_cases(path))
    assert result.category == 3


def test_conflicting_risks_of_one_patient(tmp_path):
    path = table(tmp_path, "patient,diameter_mm,texture,risk\np1,7,solid,low\n\np1,5,solid,high\n")
    with pytest.raises(LungtkError, match="line 4, column 'risk': patient p1 is high risk here but low"):
        read_cases(path)


@pytest.mark.parametrize(
    ("finding", "message"),
    [
        ('{"diameter_mm": NaN, "texture": "solid"}', "not valid JSON"),
        ('{"diameter_mm": Infinity, "texture": "solid"}', "not valid JSON"),
        (
            '{"diameter_mm": 1e999, "texture": "solid"}',
            "finding 1, column 'diameter_mm': inf is not a finite",
        ),
        (
            '{"diameter_mm": true, "texture": "solid"}',
            "finding 1, column 'diameter_mm': True is not a number",
        ),
        ('{"diameter_mm": 7, "texture": {"solid": "x"}}', "finding 1, column 'texture' 'solid'"),
        ('{"diameter_mm": 7, "texture": {"solid": 2}}', "is not a probability"),
        ('{"diameter_mm": 7, "texture": ["solid"]}', "is not a texture"),
        ('{"diameter_mm": 7, "texture": "solid", "probability": 3}', "'probability': 3 is not a probability"),
    ],
)
def test_findings_json_values_are_checked(tmp_path, finding, message):
    path = table(tmp_path, '{"findings": [' + finding + "]}", "findings.json")
    with pytest.raises(LungtkError, match=message):
        read_cases(path)


@pytest.mark.parametrize("value", [7, -0.1, float("nan"), float("inf")])
def test_min_probability_is_a_probability(value):
    with pytest.raises(LungtkError):
        recommend_cases({}, min_probability=value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Nodule(Texture.PART_SOLID, diameter_mm=5, solid_component_mm=50),
        lambda: Nodule(Texture.SOLID, diameter_mm=float("inf")),
        lambda: Nodule(Texture.SOLID, volume_mm3=float("nan")),
        lambda: Nodule(Texture.SOLID, diameter_mm=5, probability=float("nan")),
    ],
)
def test_nodules_check_themselves(make):
    with pytest.raises(LungtkError):
        make()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("patient,category\np1,1\np1,2\n", "line 3, column 'category': patient p1 is category 2 here but 1"),
        ("patient,category\np1,nan\n", "line 2, column 'category': 'nan' is not a category 0-3"),
        ("patient,category\n", "no labelled patients"),
        ("patient,category\n,1\n", "line 2, column 'patient': is empty"),
        ("who,what\np1,1\n", "needs a 'patient' and a 'category' column"),
    ],
)
def test_bad_label_tables(tmp_path, text, message):
    with pytest.raises(LungtkError, match=message):
        read_labels(table(tmp_path, text, "labels.csv"))


# -- the model file: JSON, checked number by number; a pickle is refused unread --------------------------


class _Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_is_never_unpickled(tmp_path, protocol):
    marker = tmp_path / "code-ran"
    for name in ("model.joblib", "model.json"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=protocol))
        with pytest.raises(LungtkError, match="not a model|pickle"):
            FleischnerForest.load(path)
    assert not marker.exists()


def trained(tmp_path):
    patients = {f"p{i}": [Nodule(Texture.SOLID, diameter_mm=4.0 + i)] for i in range(8)}
    labels = {p: int(i >= 4) for i, p in enumerate(patients)}
    path = FleischnerForest.fit(patients, labels, n_estimators=3, seed=1).save(tmp_path / "m.json")
    return patients, json.loads(path.read_text()), path


def test_a_saved_model_round_trips(tmp_path):
    patients, _, path = trained(tmp_path)
    again = FleischnerForest.load(path)
    assert set(again.predict_proba(patients)) == set(patients)
    assert all(np.isclose(p.sum(), 1.0) for p in again.predict_proba(patients).values())


def _tamper(data, how):
    tree = data["trees"][0]
    if how == "format":
        data["format"] = "lungtk-fleischner-forest/1"
    elif how == "features":
        data["features"] = ["a"]
    elif how == "classes":
        data["classes"] = [0, 7]
    elif how == "no trees":
        data["trees"] = []
    elif how == "cycle":
        tree["left"][0] = 0
    elif how == "feature":
        inner = tree["left"].index(next(v for v in tree["left"] if v != -1))
        tree["feature"][inner] = 99
    elif how == "nan":
        tree["value"][-1][0] = None
    elif how == "length":
        tree["threshold"].append(0.5)
    elif how == "strings":
        tree["left"] = [str(v) for v in tree["left"]]
    return data


@pytest.mark.parametrize(
    "how", ["format", "features", "classes", "no trees", "cycle", "feature", "nan", "length", "strings"]
)
def test_a_tampered_model_is_refused(tmp_path, how):
    _, data, path = trained(tmp_path)
    if how in ("cycle", "feature") and len(data["trees"][0]["left"]) == 1:
        pytest.skip("a one-leaf tree has no split to tamper with")
    path.write_text(json.dumps(_tamper(data, how)))
    with pytest.raises(LungtkError, match="not a valid model"):
        FleischnerForest.load(path)


def test_not_json_and_missing_model(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("[" * 100_000)
    with pytest.raises(LungtkError, match="not a model"):
        FleischnerForest.load(path)
    with pytest.raises(LungtkError, match="no such model file"):
        FleischnerForest.load(tmp_path / "none.json")
    os.mkdir(tmp_path / "folder.json")
    with pytest.raises(LungtkError):
        FleischnerForest.load(tmp_path / "folder.json")


@pytest.mark.parametrize(("trees", "seed"), [(0, 0), (-1, 0), (5, -1), (5, 2**32)])
def test_fit_checks_its_settings(trees, seed):
    patients = {"a": [], "b": [Nodule(Texture.SOLID, diameter_mm=9.0)]}
    with pytest.raises(LungtkError):
        FleischnerForest.fit(patients, {"a": 0, "b": 3}, n_estimators=trees, seed=seed)


@pytest.mark.parametrize("uid", [["a", "b"], {"x": 1}, True])
def test_a_findings_json_id_that_is_not_text_is_refused(tmp_path, uid):
    path = tmp_path / "findings.json"
    path.write_text(json.dumps({"findings": [{"seriesuid": uid, "diameter_mm": 6.0, "texture": "solid"}]}))
    with pytest.raises(LungtkError, match="is not text"):
        read_cases(path)
