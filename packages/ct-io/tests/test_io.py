"""Readers and writers, checked against SimpleITK as an independent reference."""

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lungtk.core import Geometry
from lungtk.ct_io import SCAN_SUFFIXES, CTReadError, read_ct, write_image
from lungtk.ct_io.errors import MultipleSeriesError
from lungtk.ct_io.io.header import read_geometry
from lungtk.ct_io.io.sitk import to_sitk
from lungtk.ct_io.points import find_scans

OBLIQUE = Rotation.from_euler("xyz", [12, -7, 25], degrees=True).as_matrix()
GEOMETRIES = {
    "axial": Geometry(np.array([-180.2, -160.5, -320.0]), np.array([0.7, 0.7, 1.25]), np.eye(3)),
    "flipped": Geometry(np.array([10.0, 200.0, 5.0]), np.array([0.8, 0.75, 2.0]), np.diag([-1.0, -1.0, 1.0])),
    "oblique": Geometry(np.array([3.0, -4.0, 5.0]), np.array([0.6, 0.9, 1.5]), OBLIQUE),
}


@pytest.fixture(params=sorted(GEOMETRIES))
def geometry(request):
    return GEOMETRIES[request.param]


@pytest.fixture
def volume():
    rng = np.random.default_rng(3)
    return rng.integers(-1024, 1500, size=(7, 9, 11), dtype=np.int16)


def sitk_geometry(image):
    return Geometry(np.array(image.GetOrigin()), np.array(image.GetSpacing()), np.array(image.GetDirection()))


def test_every_scan_suffix_is_tested():
    assert set(SCAN_SUFFIXES) == {".mhd", ".mha", ".nii.gz", ".nii", ".nrrd", ".nhdr"}


@pytest.mark.parametrize("suffix", SCAN_SUFFIXES)
def test_reads_what_simpleitk_writes(tmp_path, volume, geometry, suffix):
    path = tmp_path / f"1.2.840.99{suffix}"
    sitk.WriteImage(to_sitk(volume, geometry), str(path))
    reference = sitk.ReadImage(str(path))
    ct = read_ct(path)
    np.testing.assert_array_equal(ct.array, sitk.GetArrayFromImage(reference))
    assert ct.geometry.isclose(sitk_geometry(reference), atol=1e-5)
    assert ct.series_uid == "1.2.840.99"


@pytest.mark.parametrize("suffix", [".mhd", ".nii.gz", ".nrrd", ".mha"])
def test_simpleitk_reads_what_we_write(tmp_path, volume, geometry, suffix):
    path = write_image(tmp_path / f"scan{suffix}", volume, geometry)
    reference = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(reference), volume)
    assert sitk_geometry(reference).isclose(geometry, atol=1e-5)


def test_a_detached_nrrd_header_is_found_and_read_but_not_written(tmp_path, volume):
    geometry = GEOMETRIES["oblique"]
    folder = tmp_path / "subset0"
    folder.mkdir()
    sitk.WriteImage(to_sitk(volume, geometry), str(folder / "1.2.3.nhdr"), useCompression=True)
    assert sorted(p.name for p in folder.iterdir()) == ["1.2.3.nhdr", "1.2.3.raw.gz"]  # header, data
    assert "data file: 1.2.3.raw.gz" in (folder / "1.2.3.nhdr").read_text()
    assert find_scans(tmp_path) == {"1.2.3": folder / "1.2.3.nhdr"}  # the header stands for the scan
    header_geometry, shape = read_geometry(folder / "1.2.3.nhdr")  # without decoding the voxels
    assert shape == volume.shape and header_geometry.isclose(geometry, atol=1e-5)
    np.testing.assert_array_equal(read_ct(folder / "1.2.3.nhdr").array, volume)
    # An atomic write renames the header into place, leaving it naming a temporary data file.
    with pytest.raises(CTReadError, match="unknown output format"):
        write_image(tmp_path / "out.nhdr", volume, geometry)


def test_compressed_mhd_from_simpleitk(tmp_path, volume, geometry):
    path = tmp_path / "z.mhd"
    sitk.WriteImage(to_sitk(volume, geometry), str(path), useCompression=True)
    assert "CompressedData = True" in path.read_text()
    np.testing.assert_array_equal(read_ct(path).array, volume)


def test_mhd_can_be_memory_mapped(tmp_path, volume):
    path = write_image(tmp_path / "m.mhd", volume, GEOMETRIES["axial"])
    ct = read_ct(path, mmap=True)
    assert isinstance(ct.array, np.memmap)
    np.testing.assert_array_equal(ct.array, volume)


def test_masks_round_trip_as_labels(tmp_path, geometry):
    mask = np.zeros((5, 6, 7), dtype=bool)
    mask[1:3, 2:4, 3:6] = True
    for name in ("mask.mhd", "mask.nii.gz"):
        back = read_ct(write_image(tmp_path / name, mask, geometry))
        np.testing.assert_array_equal(back.array.astype(bool), mask)
        assert back.geometry.isclose(geometry, atol=1e-5)


def test_nifti_written_by_nibabel_matches_simpleitk(tmp_path):
    import nibabel as nib

    affine = np.array([[-0.7, 0.0, 0.0, 90.0], [0.0, 0.7, 0.0, -120.0], [0.0, 0.0, 2.5, -60.0], [0, 0, 0, 1]])
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "nib.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    reference = sitk.ReadImage(str(path))
    ct = read_ct(path)
    np.testing.assert_array_equal(ct.array, sitk.GetArrayFromImage(reference))
    assert ct.geometry.isclose(sitk_geometry(reference), atol=1e-5)


def write_dicom_series(folder, volume, geometry, uid):
    folder.mkdir(parents=True, exist_ok=True)
    image = to_sitk(volume, geometry)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    orientation = "\\".join(f"{v:.6f}" for v in (*geometry.direction[:, 0], *geometry.direction[:, 1]))
    for k in range(volume.shape[0]):
        slice_ = image[:, :, k]
        for tag, value in {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.3.4",
            "0020|000e": uid,
            "0020|0013": str(k + 1),
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": str(geometry.spacing[2]),
        }.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_is_read_sorted_with_its_geometry(tmp_path, volume):
    g = GEOMETRIES["axial"]
    write_dicom_series(tmp_path / "dcm", volume, g, "1.2.826.0.1.3680043.8.498.1")
    ct = read_ct(tmp_path / "dcm")
    np.testing.assert_array_equal(ct.array, volume)
    assert ct.geometry.isclose(g, atol=1e-4)
    assert ct.series_uid == "1.2.826.0.1.3680043.8.498.1"


def test_folder_with_two_series_lists_them_and_takes_series(tmp_path, volume):
    g = GEOMETRIES["axial"]
    write_dicom_series(tmp_path / "dcm", volume, g, "1.2.3.100")
    write_dicom_series(tmp_path / "dcm", volume[:4] + 1, g, "1.2.3.200")
    with pytest.raises(
        MultipleSeriesError, match=r"holds 2 DICOM series: 1\.2\.3\.100 .*--series UID"
    ) as err:
        read_ct(tmp_path / "dcm")
    assert err.value.series == {"1.2.3.100": 3, "1.2.3.200": 4}
    elsewhere = err.value.for_command({"--out"})  # a command without --series gets other advice
    assert "--series UID" not in elsewhere.split("`")[0] and "folder of its own" in elsewhere
    second = read_ct(tmp_path / "dcm", series="1.2.3.200")
    np.testing.assert_array_equal(second.array, volume[:4] + 1)
    with pytest.raises(CTReadError, match="has no DICOM series 9.9"):
        read_ct(tmp_path / "dcm", series="9.9")


# -- bad input: one precise message each ----------------------------------------------------------------


@pytest.fixture
def mhd(tmp_path, volume):
    return write_image(tmp_path / "bad.mhd", volume, GEOMETRIES["axial"])


def test_missing_raw(mhd):
    mhd.with_suffix(".raw").unlink()
    with pytest.raises(CTReadError, match=r"bad\.mhd: its data file bad\.raw is missing"):
        read_ct(mhd)


def test_truncated_raw(mhd):
    raw = mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-10])
    with pytest.raises(CTReadError, match=r"bad\.raw: is truncated: 1376 bytes, but DimSize \[11, 9, 7\]"):
        read_ct(mhd)


def test_header_size_mismatch(mhd):
    mhd.write_text(mhd.read_text().replace("DimSize = 11 9 7", "DimSize = 11 9 5"))
    with pytest.raises(CTReadError, match="header and data do not match"):
        read_ct(mhd)


def test_unsupported_pixel_type(mhd):
    mhd.write_text(mhd.read_text().replace("MET_SHORT", "MET_FLOAT_MATRIX"))
    with pytest.raises(CTReadError, match="unsupported pixel type MET_FLOAT_MATRIX"):
        read_ct(mhd)


def test_2d_image(tmp_path):
    path = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkInt16), str(path))
    with pytest.raises(CTReadError, match="is a 2D image"):
        read_ct(path)


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz", ".nrrd"])
def test_rgb_image(tmp_path, suffix):
    path = tmp_path / f"rgb{suffix}"
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkVectorUInt8, 3), str(path))
    with pytest.raises(CTReadError, match=r"RGB|channels|vector"):
        read_ct(path)


def test_text_file_named_nii_gz(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("this is not an image\n")
    with pytest.raises(CTReadError, match=r"notes\.nii\.gz: is not a readable NIfTI file"):
        read_ct(path)
    path.write_bytes(gzip.compress(b"still not an image"))
    with pytest.raises(CTReadError, match="is not a readable NIfTI file"):
        read_ct(path)


def test_nan_voxels(tmp_path):
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = np.nan
    path = write_image(tmp_path / "nan.nii.gz", data, GEOMETRIES["axial"])
    with pytest.raises(CTReadError, match="contains 1 NaN/infinite voxels"):
        read_ct(path)


def test_empty_dicom_folder_and_missing_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CTReadError, match="no DICOM series found"):
        read_ct(tmp_path / "empty")
    with pytest.raises(CTReadError, match=r"nope\.mhd: not found"):
        read_ct(tmp_path / "nope.mhd")
    (tmp_path / "scan.xyz").write_text("x")
    with pytest.raises(CTReadError, match="unknown image format"):
        read_ct(tmp_path / "scan.xyz")
