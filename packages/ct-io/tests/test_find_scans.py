"""A folder that holds a data set is read as that data set: its CT scans, never its masks; and two files
with one series UID are an error naming both, never a silent pick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io import write_image
from lungtk.ct_io.datasets import detect_layout, open_dataset
from lungtk.ct_io.points import ScanDirectory, find_scans
from lungtk.ct_io.scans import DuplicateScanError

GEOMETRY = Geometry(np.zeros(3), np.ones(3), np.eye(3))


def ct(path):
    write_image(path, np.full((2, 3, 4), -800, np.int16), GEOMETRY)
    return path


def mask(path):
    write_image(path, np.zeros((2, 3, 4), np.uint8), GEOMETRY)
    return path


def test_luna16_root_reads_the_subsets_not_the_lung_masks(tmp_path):
    root = tmp_path / "LUNA16"
    scans = [ct(root / "subset0" / "1.1.mhd"), ct(root / "subset1" / "1.2.mhd")]
    mask(root / "seg-lungs-LUNA16" / "1.1.mhd")
    mask(root / "seg-lungs-LUNA16" / "1.2.mhd")
    assert find_scans(root) == {"1.1": scans[0], "1.2": scans[1]}
    index = open_dataset(root)  # the index reads the masks as what they are
    assert index.scan("1.1").image == scans[0] and index.scan("1.1").labels == (
        root / "seg-lungs-LUNA16" / "1.1.mhd",
    )


def test_luna16_without_subsets_still_skips_the_mask_folder(tmp_path):
    scan = ct(tmp_path / "flat" / "1.1.mhd")
    mask(tmp_path / "flat" / "seg-lungs-LUNA16" / "1.1.mhd")
    assert find_scans(tmp_path / "flat") == {"1.1": scan}
    assert detect_layout(tmp_path / "flat") == "luna16"


def test_a_phantom_set_reads_its_scans_not_its_masks(tmp_path):
    root = tmp_path / "phantoms"
    scan = ct(root / "subset0" / "2.25.1.nii.gz")
    mask(root / "masks" / "2.25.1.nii.gz")
    (root / "phantom.json").write_text("{}")
    assert find_scans(root) == {"2.25.1": scan}
    # and a folder holding several data sets reads each one's scans
    other = ct(tmp_path / "more" / "subset0" / "2.25.2.mhd")
    mask(tmp_path / "more" / "masks" / "2.25.2.mhd")
    assert find_scans(tmp_path) == {"2.25.1": scan, "2.25.2": other}


def test_msd_reads_images_not_labels_nor_resource_forks(tmp_path):
    root = tmp_path / "Task06_Lung"
    train = ct(root / "imagesTr" / "lung_001.nii.gz")
    test = ct(root / "imagesTs" / "lung_002.nii.gz")
    mask(root / "labelsTr" / "lung_001.nii.gz")
    (root / "imagesTr" / "._lung_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    (root / "dataset.json").write_text(
        json.dumps(
            {"training": [{"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/lung_001.nii.gz"}]}
        )
    )
    assert find_scans(root) == {"lung_001": train, "lung_002": test}


def test_lndb_reads_the_cts_not_the_reader_masks(tmp_path):
    root = tmp_path / "LNDb"
    scan = ct(root / "data0" / "LNDb-0001.mhd")
    mask(root / "masks" / "LNDb-0001_rad1.mhd")
    mask(root / "data0" / "LNDb-0001_rad2.mhd")  # even beside the scan
    assert find_scans(root) == {"LNDb-0001": scan}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("subset0/4.1.mhd", "subset1/4.1.mhd"),  # one scan in two subsets
        ("a/5.1.mhd", "b/5.1.nii.gz"),  # two formats in two folders
        ("6.1.mha", "6.1.mhd"),  # two formats side by side
        ("x/7.1.nrrd", "y/z/7.1.nii"),
    ],
)
def test_two_files_with_one_uid_are_an_error_naming_both(tmp_path, first, second):
    root = tmp_path / "data"
    ct(root / first)
    ct(root / second)
    with pytest.raises(DuplicateScanError) as err:
        find_scans(root)
    message = str(err.value)
    assert str(root / first) in message and str(root / second) in message and "\n" not in message
    assert "--series" not in message and "Remove or rename" in message


def test_duplicates_in_the_data_set_indexes_are_errors_too(tmp_path):
    luna = tmp_path / "luna"
    ct(luna / "subset0" / "1.1.mhd")
    ct(luna / "subset3" / "1.1.mhd")
    with pytest.raises(DuplicateScanError, match="subset3"):
        open_dataset(luna)
    lndb = tmp_path / "lndb"
    ct(lndb / "data0" / "LNDb-0001.mhd")
    ct(lndb / "data1" / "LNDb-0001.mhd")
    with pytest.raises(DuplicateScanError, match="data1"):
        open_dataset(lndb)
    msd = tmp_path / "msd"
    ct(msd / "imagesTr" / "lung_1.nii.gz")
    ct(msd / "imagesTs" / "lung_1.nii.gz")
    (msd / "dataset.json").write_text(
        json.dumps({"training": [{"image": "imagesTr/lung_1.nii.gz"}], "test": ["imagesTs/lung_1.nii.gz"]})
    )
    with pytest.raises(DuplicateScanError, match="lung_1"):
        open_dataset(msd)


def test_a_folder_of_masks_only_says_so(tmp_path):
    mask(tmp_path / "only" / "masks" / "7.1.mhd")
    with pytest.raises(LungtkError, match=r"holds label masks \(masks\) but no CT scans"):
        find_scans(tmp_path / "only")
    mask(tmp_path / "lndbmasks" / "LNDb-0002_rad1.mhd")
    with pytest.raises(LungtkError, match="holds label masks"):
        find_scans(tmp_path / "lndbmasks")
    # naming the mask folder itself reads it: that is asked for explicitly
    assert set(find_scans(tmp_path / "only" / "masks")) == {"7.1"}


def test_hidden_and_temporary_files_are_not_scans(tmp_path):
    scan = ct(tmp_path / "8.1.mhd")
    (tmp_path / ".8.1.mhd.abcd1234.tmp.mhd").write_text("ObjectType = Image\n")  # a killed atomic write
    ct(tmp_path / ".hidden" / "8.2.mhd")
    assert find_scans(tmp_path) == {"8.1": scan}


def test_links_back_up_the_tree_and_a_subset_linked_twice(tmp_path):
    scan = ct(tmp_path / "loop" / "9.1.mhd")
    (tmp_path / "loop" / "sub").mkdir()
    (tmp_path / "loop" / "sub" / "up").symlink_to(tmp_path / "loop")
    assert find_scans(tmp_path / "loop") == {"9.1": scan}
    first = ct(tmp_path / "luna" / "subset0" / "9.2.mhd")
    (tmp_path / "luna" / "subset1").symlink_to(tmp_path / "luna" / "subset0")
    assert find_scans(tmp_path / "luna") == {"9.2": first}


def test_scan_directory_uses_the_data_set_layout(tmp_path):
    root = tmp_path / "LUNA16"
    ct(root / "subset0" / "1.1.mhd")
    mask(root / "seg-lungs-LUNA16" / "1.1.mhd")
    lookup = ScanDirectory(root)
    assert lookup({"seriesuid": "1.1"}, 0).name == str(root / "subset0" / "1.1.mhd")
