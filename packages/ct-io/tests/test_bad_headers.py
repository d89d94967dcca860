"""Headers that lie: sizes, spacings and directions a reader must refuse in one line naming the file,
before it allocates or decompresses anything. Every file here is a few hundred bytes; none of these tests
allocates more than that (the claims are checked, not believed)."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from lungtk.core import Geometry, LungtkError
from lungtk.ct_io import CTReadError, read_ct, write_image
from lungtk.ct_io.io.header import read_geometry
from lungtk.ct_io.io.limits import MAX_VOXELS_ENV

OK_VOXELS = np.arange(6 * 5 * 4, dtype=np.int16).reshape(4, 5, 6)  # (index, row, col) of DimSize 6 5 4
RAW = OK_VOXELS.tobytes()
GEOMETRY = Geometry(np.array([-10.0, 5.0, -200.0]), np.array([0.7, 0.8, 2.5]), np.eye(3))


def mhd(tmp_path, name="scan", data=RAW, compressed=False, **fields):
    values = {
        "NDims": "3",
        "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False",
        "CompressedData": str(compressed),
        "TransformMatrix": "1 0 0 0 1 0 0 0 1",
        "Offset": "0 0 0",
        "ElementSpacing": "0.7 0.8 2.5",
        "DimSize": "6 5 4",
        "ElementType": "MET_SHORT",
    }
    values.update({k: v for k, v in fields.items() if v is not None})
    for k in [k for k, v in fields.items() if v is None]:
        values.pop(k)
    data_name = f"{name}.zraw" if compressed else f"{name}.raw"
    lines = [
        "ObjectType = Image",
        *(f"{k} = {v}" for k, v in values.items()),
        f"ElementDataFile = {data_name}",
    ]
    path = tmp_path / f"{name}.mhd"
    path.write_text("\n".join(lines) + "\n")
    if data is not None:
        (tmp_path / data_name).write_bytes(data)
    return path


def refused(path, pattern, *, geometry_too=True):
    """Both the full read and the header-only read refuse ``path`` with one line naming it."""
    readers = (read_ct, read_geometry) if geometry_too else (read_ct,)
    for reader in readers:
        with pytest.raises(LungtkError, match=pattern) as err:
            reader(path)
        message = str(err.value)
        assert "\n" not in message and path.name.split(".")[0] in message, message


# -- MetaImage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dims", "pattern"),
    [
        ("6.5 5 4", "DimSize must be whole numbers"),
        ("6 5 3.9999", "DimSize must be whole numbers"),
        ("nan 5 4", "DimSize must be finite"),
        ("6 inf 4", "DimSize must be finite"),
        ("-6 5 4", "empty or negative dimension"),
        ("6 0 4", "empty or negative dimension"),
        ("6 5", "DimSize has 2 values, expected 3"),
        ("six 5 4", "non-numeric DimSize"),
        ("2000 2000 2000", r"claims 2000 x 2000 x 2000 = 8,000,000,000 voxels, more than"),
        ("1e30 1 1", "more than lungtk's limit"),
    ],
)
def test_mhd_dimsize_that_is_not_a_size(tmp_path, dims, pattern):
    refused(mhd(tmp_path, DimSize=dims), pattern)


def test_mhd_dimsize_written_as_a_whole_float_is_read(tmp_path):
    ct = read_ct(mhd(tmp_path, DimSize="6.0 5 4"))
    np.testing.assert_array_equal(ct.array, OK_VOXELS)


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("ElementSpacing", "nan 1 1", "ElementSpacing must be finite"),
        ("ElementSpacing", "1 inf 1", "ElementSpacing must be finite"),
        ("ElementSpacing", "0 1 1", "ElementSpacing must be positive"),
        ("ElementSpacing", "1 -0.7 1", "ElementSpacing must be positive"),
        ("ElementSpacing", None, "no ElementSpacing; lungtk does not guess"),
        ("Offset", "nan 0 0", "Offset must be finite"),
        ("Offset", "0 0 -inf", "Offset must be finite"),
        ("TransformMatrix", "nan 0 0 0 1 0 0 0 1", "TransformMatrix must be finite"),
        ("TransformMatrix", "0 0 0 0 0 0 0 0 0", "direction must be an invertible"),
        ("TransformMatrix", "1 0 0 1 0 0 0 0 1", "direction must be an invertible"),
        ("TransformMatrix", "1 0 0 0 1 0", "TransformMatrix has 6 values"),
        ("TransformMatrix", "1 0 0 0 1 0 0 0 5", r"\(TransformMatrix\): direction must hold unit vectors"),
        ("ElementSpacing", "1 1 1e-300", r"\(ElementSpacing\): spacing must be between"),
        ("Offset", "1e308 0 0", r"\(Offset\): origin must lie within"),
        ("NDims", "3.5", "NDims must be whole numbers"),
        ("NDims", "2", "is a 2D image"),
    ],
)
def test_mhd_geometry_that_is_not_a_geometry(tmp_path, field, value, pattern):
    refused(mhd(tmp_path, **{field: value}), pattern)


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"ElementNumberOfChannels": "2.5"}, "ElementNumberOfChannels must be whole numbers"),
        ({"BinaryDataByteOrderMSB": "maybe"}, "must be True or False"),
        ({"HeaderSize": "-5"}, "HeaderSize must be -1 or more"),
        ({"ElementType": "MET_WHAT"}, "unsupported pixel type MET_WHAT"),
    ],
)
def test_mhd_other_fields(tmp_path, fields, pattern):
    refused(mhd(tmp_path, **fields), pattern, geometry_too=False)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "is empty"),
        (bytes(range(256)) * 4, "not a MetaImage header"),
        (b"hello world\n", "not a MetaImage header"),
        (b"NDims = 3\nDimSize = 6 5 4\n", "no ElementDataFile"),
    ],
)
def test_not_a_metaimage_header(tmp_path, content, pattern):
    path = tmp_path / "junk.mhd"
    path.write_bytes(content)
    refused(path, pattern)


def test_a_small_zraw_that_inflates_far_past_the_header_is_stopped_at_the_header_size(tmp_path, monkeypatch):
    bomb = zlib.compress(bytes(8 << 20), 9)  # 8 KB that inflate to 8 MB; the header says 240 bytes
    path = mhd(tmp_path, data=bomb, compressed=True)
    produced = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, *args):
            self.inner = real(*args)

        def decompress(self, data, max_length=0):
            assert 0 < max_length <= len(RAW) + 1  # never asked for more than the header's size + 1
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Spy)
    refused(path, "decompresses to more than the 240 bytes the header describes", geometry_too=False)
    assert sum(produced) <= len(RAW) + 1


def test_compressed_data_too_small_for_the_claimed_size_is_refused_before_inflating(tmp_path, monkeypatch):
    path = mhd(tmp_path, data=zlib.compress(bytes(1 << 16), 9), compressed=True, DimSize="512 512 300")
    monkeypatch.setattr(zlib, "decompressobj", lambda *a: pytest.fail("inflated before the size check"))
    refused(path, r"zlib data, which cannot decompress to the 157,286,400 bytes", geometry_too=False)


@pytest.mark.parametrize(
    ("data", "fields", "pattern"),
    [
        (b"\x78\x9c not zlib at all", {}, "compressed data is corrupt"),
        (zlib.compress(RAW)[:10], {}, "compressed data is truncated"),
        (zlib.compress(RAW[:100]), {}, "decompresses to 100 bytes; the header needs 240"),
        (zlib.compress(RAW), {"CompressedDataSize": "99999"}, "CompressedDataSize is 99,999"),
    ],
)
def test_damaged_zraw(tmp_path, data, fields, pattern):
    refused(mhd(tmp_path, data=data, compressed=True, **fields), pattern, geometry_too=False)


def test_gzip_and_zlib_zraw_both_read(tmp_path):
    for name, data in (("z", zlib.compress(RAW)), ("g", gzip.compress(RAW))):
        np.testing.assert_array_equal(
            read_ct(mhd(tmp_path, name, data=data, compressed=True)).array, OK_VOXELS
        )


def test_mha_with_local_data_claiming_more_than_it_holds(tmp_path):
    text = mhd(tmp_path, "h").read_text().replace("ElementDataFile = h.raw", "ElementDataFile = LOCAL")
    path = tmp_path / "local.mha"
    path.write_bytes(text.replace("DimSize = 6 5 4", "DimSize = 600 500 400").encode() + RAW)
    refused(path, "is truncated", geometry_too=False)
    path.write_bytes(text.replace("DimSize = 6 5 4", "DimSize = 6000 5000 4000").encode() + RAW)
    refused(path, "more than lungtk's limit")


def test_the_voxel_limit_can_be_set_and_a_bad_setting_is_one_line(tmp_path, monkeypatch):
    path = mhd(tmp_path)
    monkeypatch.setenv(MAX_VOXELS_ENV, "100")
    refused(path, f"more than lungtk's limit of 100.*raise {MAX_VOXELS_ENV}")
    monkeypatch.setenv(MAX_VOXELS_ENV, "lots")
    with pytest.raises(LungtkError, match=f"{MAX_VOXELS_ENV}='lots' is not a positive whole number"):
        read_ct(path)
    monkeypatch.setenv(MAX_VOXELS_ENV, "1_000")
    assert read_ct(path).shape == (4, 5, 6)


# -- NIfTI -----------------------------------------------------------------------------------------------


def nifti_bytes(patch=None):
    import nibabel as nib

    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    image = nib.Nifti1Image(OK_VOXELS.transpose(2, 1, 0).copy(), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    block = bytearray(image.to_bytes())
    if patch:
        patch(block)
    return bytes(block)


def nifti(tmp_path, patch=None, gz=False, name="img"):
    data = nifti_bytes(patch)
    path = tmp_path / f"{name}.nii{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def dims(*values):
    return lambda b: struct.pack_into(f"<{len(values)}h", b, 40, *values)


def sform(*row_x):
    def patch(b):
        struct.pack_into("<hh", b, 252, 0, 1)  # qform off, sform on
        struct.pack_into("<4f", b, 280, *row_x)

    return patch


def pixdim(qform, *values):
    def patch(b):
        struct.pack_into("<hh", b, 252, qform, 0)  # sform off: pixdim sets the spacing
        struct.pack_into("<3f", b, 80, *values)

    return patch


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    ("patch", "pattern"),
    [
        (dims(3, 32767, 32767, 32767), r"claims 32767 x 32767 x 32767 = .* voxels, more than"),
        (dims(3, -6, 5, 4), "empty or negative dimension"),
        (dims(3, 6, 0, 4), "empty or negative dimension"),
        (dims(9, 6, 5, 4), r"dim\[0\] = 9"),
        (dims(4, 6, 5, 2, 2), "4D series of 2 volumes"),
        (lambda b: struct.pack_into("<h", b, 70, 999), "unknown NIfTI data type code 999"),
        (lambda b: struct.pack_into("<f", b, 108, -5.0), "invalid vox_offset"),
        (lambda b: struct.pack_into("<f", b, 108, NAN), "invalid vox_offset"),
        (sform(0, 0, 0, 0), "sform affine gives axis i zero length"),
        (sform(NAN, 0, 0, 0), "NaN or infinite numbers in its sform"),
        (sform(INF, 0, 0, 0), "NaN or infinite numbers in its sform"),
        (pixdim(1, 0.0, 0.8, 2.5), r"pixdim\[1:4\] = \(0.0.*through its qform.*nibabel would assume 1 mm"),
        (pixdim(0, 0.0, 0.0, 0.0), r"through its pixdim \(no qform or sform\)"),
        (pixdim(0, NAN, 0.8, 2.5), "a zero or NaN voxel size is unknown"),
        (pixdim(1, 0.7, INF, 2.5), "a zero or NaN voxel size is unknown"),
        (
            lambda b: (pixdim(1, 0.7, 0.8, 2.5)(b), struct.pack_into("<f", b, 256, NAN)),
            "NaN or infinite .* qform",
        ),
    ],
)
def test_nifti_header_that_lies(tmp_path, capfd, patch, gz, pattern):
    refused(nifti(tmp_path, patch, gz), pattern)
    assert capfd.readouterr().err == ""  # nibabel's log lines and numpy warnings stay quiet


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (nifti_bytes()[:-30], "is truncated: 210 bytes of data, but the header describes 240"),
        (nifti_bytes()[:348], "is truncated: 0 bytes of data"),
        (nifti_bytes()[:100], "shorter than a NIfTI header"),
        (bytes(range(256)) * 3, "first 4 bytes are not a NIfTI header size"),
    ],
)
def test_truncated_or_foreign_nifti(tmp_path, content, pattern):
    path = tmp_path / "cut.nii"
    path.write_bytes(content)
    refused(path, pattern)


def test_a_gzipped_nifti_too_small_for_its_claim_is_refused_before_decompressing(tmp_path):
    refused(nifti(tmp_path, dims(3, 1024, 1024, 1024), gz=True), "gzip data, which cannot decompress")


def test_a_truncated_gzipped_nifti_is_one_line(tmp_path):
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(gzip.compress(nifti_bytes())[:-40])
    refused(path, "is not a readable NIfTI file", geometry_too=False)


def test_nifti_with_a_valid_sform_ignores_a_zero_pixdim(tmp_path):
    def patch(b):
        struct.pack_into("<3f", b, 80, 0.0, 0.0, 0.0)  # sform (code 1) is what counts

    ct = read_ct(nifti(tmp_path, patch))
    np.testing.assert_allclose(ct.geometry.spacing, [0.7, 0.8, 2.5])
    np.testing.assert_array_equal(ct.array, OK_VOXELS)


# -- NRRD ------------------------------------------------------------------------------------------------


def nrrd(tmp_path, name="vol", body=RAW, **fields):
    values = {
        "type": "short",
        "dimension": "3",
        "space": "left-posterior-superior",
        "sizes": "6 5 4",
        "space directions": "(0.7,0,0) (0,0.8,0) (0,0,2.5)",
        "kinds": "domain domain domain",
        "endian": "little",
        "encoding": "raw",
        "space origin": "(0,0,0)",
    }
    values.update({k.replace("_", " "): v for k, v in fields.items()})
    if "dimension" not in fields:
        values["dimension"] = str(len(values["sizes"].split()))
    text = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in values.items()) + "\n"
    path = tmp_path / f"{name}.nrrd"
    path.write_bytes(text.encode() + body)
    return path


def test_a_good_nrrd_reads(tmp_path):
    ct = read_ct(nrrd(tmp_path))
    np.testing.assert_array_equal(ct.array, OK_VOXELS)
    assert ct.geometry.isclose(Geometry(np.zeros(3), np.array([0.7, 0.8, 2.5]), np.eye(3)))


@pytest.mark.parametrize(
    ("fields", "body", "pattern"),
    [
        ({"sizes": "2000 2000 2000"}, RAW, r"2000 x 2000 x 2000 = 8,000,000,000 voxels, more than"),
        ({"sizes": "1000 1000 1000", "encoding": "gzip"}, gzip.compress(bytes(1 << 16)), "cannot decompress"),
        ({"sizes": "60 50 40"}, RAW, "is truncated: 240 bytes of data, but the header describes 240,000"),
        ({"sizes": "6.5 5 4"}, RAW, "'sizes' must be whole numbers"),
        ({"sizes": "-6 5 4"}, RAW, "empty or negative dimension"),
        ({"sizes": "30 8"}, RAW, "is a 2D image"),
        ({"space_directions": "(nan,0,0) (0,1,0) (0,0,1)"}, RAW, "'space directions' has NaN or infinite"),
        ({"space_directions": "(inf,0,0) (0,1,0) (0,0,1)"}, RAW, "'space directions' has NaN or infinite"),
        ({"space_directions": "(0,0,0) (0,1,0) (0,0,1)"}, RAW, "'space directions' has a zero vector"),
        ({"space_origin": "(nan,0,0)"}, RAW, "'space origin' has NaN or infinite"),
        ({"type": "quaternion"}, RAW, "NRRD type 'quaternion'"),
        ({"encoding": "zstd"}, RAW, "NRRD encoding 'zstd'"),
    ],
)
def test_nrrd_header_that_lies(tmp_path, capfd, fields, body, pattern):
    refused(nrrd(tmp_path, body=body, **fields), pattern)
    assert "WARNING" not in capfd.readouterr().err


def test_detached_nrrd_headers(tmp_path):
    raw = tmp_path / "d.raw"
    raw.write_bytes(RAW)
    common = "NRRD0004\ntype: short\ndimension: 3\nendian: little\nencoding: raw\n"
    cases = {
        "big": ("sizes: 600 600 600\nspacings: 1 1 1\ndata file: d.raw\n", r"d\.raw: is truncated"),
        "gone": (
            "sizes: 6 5 4\nspacings: 1 1 1\ndata file: nowhere.raw\n",
            "its data file nowhere.raw is missing",
        ),
        "flat": ("sizes: 6 5 4\nspacings: 0 1 1\ndata file: d.raw\n", "'spacings' has a zero voxel size"),
        "list": ("sizes: 6 5 4\nspacings: 1 1 1\ndata file: LIST\n", "is a multi-file NRRD form"),
        "pct": ("sizes: 6 5 4\nspacings: 1 1 1\ndata file: d%b.raw\n", "rename it without '%'"),
    }
    for name, (fields, pattern) in cases.items():
        path = tmp_path / f"{name}.nhdr"
        path.write_text(common + fields)
        with pytest.raises(CTReadError, match=pattern):
            read_ct(path)
        with pytest.raises(CTReadError, match=pattern):
            read_geometry(path)


def test_not_a_nrrd(tmp_path):
    path = tmp_path / "text.nrrd"
    path.write_text("hello\n")
    refused(path, "is not a NRRD file")


# -- DICOM -----------------------------------------------------------------------------------------------


def dicom_series(folder, slices=3):
    """Slices SimpleITK writes (implicit VR little endian): Rows / Columns sit at fixed tags."""
    folder.mkdir(parents=True)
    volume = np.zeros((slices, 9, 11), np.int16)
    image = sitk.GetImageFromArray(volume)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(slices):
        one = image[:, :, k]
        for tag, value in {
            "0008|0060": "CT",
            "0020|000e": "1.2.3.77",
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.5 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }.items():
            one.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(one)
    return sorted(folder.iterdir())


def set_rows_columns(path, rows, columns):
    data = bytearray(path.read_bytes())
    for tag, value in ((b"\x28\x00\x10\x00", rows), (b"\x28\x00\x11\x00", columns)):
        at = data.find(tag + b"\x02\x00\x00\x00")
        assert at > 0
        struct.pack_into("<H", data, at + 8, value)
    path.write_bytes(bytes(data))


def test_dicom_slices_claiming_more_pixels_than_they_hold(tmp_path):
    for f in dicom_series(tmp_path / "huge"):
        set_rows_columns(f, 65535, 65535)
    refused(tmp_path / "huge", r"DICOM series 1\.2\.3\.77 claims 65535 x 65535 x 3")
    for f in dicom_series(tmp_path / "big"):
        set_rows_columns(f, 20000, 20000)  # within the voxel limit, but 198 bytes of pixels per slice
    refused(tmp_path / "big", r"IM0000\.dcm: DICOM slice holds 198 bytes of pixel data")


def test_a_truncated_dicom_slice_is_not_silently_left_out(tmp_path):
    first, *_ = dicom_series(tmp_path / "cut")
    first.write_bytes(first.read_bytes()[:-100])
    refused(tmp_path / "cut", r"IM0000\.dcm: is a slice of the DICOM series but cannot be read")


def test_writing_where_a_folder_cannot_be_made_names_the_target(tmp_path):
    (tmp_path / "file").write_text("x")
    for name in ("scan.mhd", "scan.nii.gz", "scan.nrrd"):
        target = tmp_path / "file" / name
        with pytest.raises(LungtkError, match=f"{target}: cannot write") as err:
            write_image(target, OK_VOXELS, GEOMETRY)
        assert ".tmp" not in str(err.value)


def test_a_full_disk_names_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    for name in ("scan.mhd", "scan.nii.gz"):
        with pytest.raises(LungtkError, match=f"{tmp_path / name}: cannot write: the disk is full") as err:
            write_image(tmp_path / name, OK_VOXELS, GEOMETRY)
        assert ".tmp" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left behind


def test_other_dicom_objects_beside_a_series_are_left_alone(tmp_path):
    dicom_series(tmp_path / "ok")
    (tmp_path / "ok" / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(64))
    (tmp_path / "ok" / "report.dcm").write_bytes(bytes(128) + b"DICM" + b"an unrelated object")
    assert read_ct(tmp_path / "ok").shape == (3, 9, 11)


@pytest.mark.parametrize("name", ["a%b", "100%03d", "50%", "é", " lead", "LIST x", "tab\tx", "LOCAL x"])
def test_scan_names_a_metaimage_header_cannot_hold_are_written_with_local_data(tmp_path, name):
    """A '%' (MetaIO's pattern sign), non-ASCII or control characters, spaces at the ends or a keyword
    cannot stand as ElementDataFile: the data goes inside the .mhd, and lungtk and ITK both read it."""
    path = write_image(tmp_path / f"{name}.mhd", OK_VOXELS, GEOMETRY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.mhd"]
    np.testing.assert_array_equal(read_ct(path).array, OK_VOXELS)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), OK_VOXELS)


def test_a_plain_scan_name_keeps_its_raw_file(tmp_path):
    write_image(tmp_path / "1.2.3.mhd", OK_VOXELS, GEOMETRY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.2.3.mhd", "1.2.3.raw"]


def test_a_data_file_named_with_a_percent_sign_is_a_file_not_a_pattern(tmp_path):
    path = mhd(tmp_path, name="a%b")  # written by another tool: "ElementDataFile = a%b.raw"
    np.testing.assert_array_equal(read_ct(path).array, OK_VOXELS)
    from lungtk.ct_io.io.header import data_files

    assert data_files(path) == [tmp_path / "a%b.raw"]


@pytest.mark.parametrize("value", ["slice%03d.raw 1 4 1", "slice%d.raw", "s%i.raw", "s%.raw 1 4 1", "LIST"])
def test_metaimage_multi_file_forms_are_refused_in_one_line(tmp_path, value):
    path = tmp_path / "series.mhd"
    text = mhd(tmp_path).read_text().replace("ElementDataFile = scan.raw", f"ElementDataFile = {value}")
    path.write_text(text)
    with pytest.raises(CTReadError, match=r"series.mhd: multi-file MetaImage data .* not supported"):
        read_ct(path)
    from lungtk.ct_io.io.header import data_files

    assert data_files(path) is None
