import csv
import io

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from lungtk.core import Geometry
from lungtk.ct_io import read_ct, write_image

OBLIQUE = Geometry(
    np.array([-150.0, -120.0, -300.0]),
    np.array([0.7, 0.75, 2.5]),
    Rotation.from_euler("zyx", [9, -4, 3], degrees=True).as_matrix(),
)


def rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def luna(tmp_path):
    """A small fake of LUNA16's layout: subset folders of <seriesuid>.mhd and an annotations.csv."""
    rng = np.random.default_rng(1)
    scans = {
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.111": ("subset0", OBLIQUE),
        "1.3.6.1.4.1.14519.5.2.1.6279.6001.222": (
            "subset1",
            Geometry(np.array([10.0, 20, -50]), np.array([0.6, 0.6, 1.0])),
        ),
    }
    points = []
    for uid, (subset, geometry) in scans.items():
        write_image(tmp_path / subset / f"{uid}.mhd", np.zeros((30, 40, 50), np.int16), geometry)
        for _ in range(3):
            irc = rng.uniform([0, 0, 0], [29, 39, 49])
            points.append((uid, *geometry.irc2xyz(irc), rng.uniform(3, 20)))
    with (tmp_path / "annotations.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        writer.writerows(points)
    return tmp_path, scans


def test_one_point_nearest_and_continuous_match_simpleitk(lungtk_cli, luna):
    root, scans = luna
    uid = next(iter(scans))
    scan = root / "subset0" / f"{uid}.mhd"
    image = sitk.ReadImage(str(scan))
    xyz = OBLIQUE.irc2xyz([12.4, 20.6, 33.2])
    proc = lungtk_cli("convert", "xyz2irc", "--ct", scan, *map(str, xyz), check=0)
    (row,) = rows(proc.stdout)
    expected = image.TransformPhysicalPointToIndex(tuple(xyz))[::-1]
    assert tuple(int(row[c]) for c in ("index", "row", "col")) == expected
    proc = lungtk_cli("convert", "xyz2irc", "--continuous", "--ct", scan, *map(str, xyz), check=0)
    (row,) = rows(proc.stdout)
    expected = image.TransformPhysicalPointToContinuousIndex(tuple(xyz))[::-1]
    np.testing.assert_allclose([float(row[c]) for c in ("index", "row", "col")], expected, atol=1e-3)


def test_annotations_convert_in_one_call_with_ct_dir(lungtk_cli, luna):
    root, scans = luna
    out = root / "annotations_irc.csv"
    lungtk_cli(
        "convert", "xyz2irc", "--ct-dir", root, "--csv", root / "annotations.csv", "--out", out, check=0
    )
    converted = rows(out.read_text())
    assert list(converted[0]) == [
        "seriesuid",
        "coordX",
        "coordY",
        "coordZ",
        "diameter_mm",
        "index",
        "row",
        "col",
    ]
    original = rows((root / "annotations.csv").read_text())
    for before, after in zip(original, converted, strict=True):
        assert after["diameter_mm"] == before["diameter_mm"]
        subset, _ = scans[after["seriesuid"]]
        image = sitk.ReadImage(str(root / subset / f"{after['seriesuid']}.mhd"))
        xyz = tuple(float(after[c]) for c in ("coordX", "coordY", "coordZ"))
        assert (
            tuple(int(after[c]) for c in ("index", "row", "col"))
            == image.TransformPhysicalPointToIndex(xyz)[::-1]
        )
    # and back: irc2xyz of the nearest voxel is that voxel's centre
    back = rows(lungtk_cli("convert", "irc2xyz", "--ct-dir", root, "--csv", out, check=0).stdout)
    for row in back:
        subset, _ = scans[row["seriesuid"]]
        image = sitk.ReadImage(str(root / subset / f"{row['seriesuid']}.mhd"))
        irc = tuple(int(row[c]) for c in ("index", "row", "col"))
        expected = image.TransformIndexToPhysicalPoint(irc[::-1])
        np.testing.assert_allclose(
            [float(row[c]) for c in ("coordX", "coordY", "coordZ")], expected, atol=1e-3
        )


def test_geometry_without_a_scan(lungtk_cli):
    proc = lungtk_cli(
        "convert",
        "irc2xyz",
        "--origin",
        "-100,-50,-300",
        "--spacing",
        "0.5,0.5,2",
        "--direction",
        "-1,0,0,0,-1,0,0,0,1",
        "10",
        "20",
        "30",
        check=0,
    )
    (row,) = rows(proc.stdout)
    assert [float(row[c]) for c in ("coordX", "coordY", "coordZ")] == [-115.0, -60.0, -280.0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ct", "{root}/nope.mhd", "1", "2", "3"], "nope.mhd: not found"),
        (["--ct", "{scan}", "1000", "0", "0"], "lies outside"),
        (["--ct-dir", "{root}", "--csv", "{root}/missing_uid.csv"], "no scan named 9.9.9"),
        (["--origin", "1,2", "--spacing", "1,1,1", "1", "2", "3"], "--origin takes 3 numbers"),
        (["--ct", "{scan}", "1", "2"], "a point is three numbers"),
    ],
)
def test_bad_input_is_one_line(lungtk_cli, luna, args, message):
    root, scans = luna
    (root / "missing_uid.csv").write_text("seriesuid,coordX,coordY,coordZ\n9.9.9,1,2,3\n")
    scan = root / "subset0" / f"{next(iter(scans))}.mhd"
    proc = lungtk_cli("convert", "xyz2irc", *(a.format(root=root, scan=scan) for a in args))
    assert proc.returncode != 0
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_convert_image_keeps_geometry(lungtk_cli, luna, tmp_path):
    root, scans = luna
    scan = root / "subset0" / f"{next(iter(scans))}.mhd"
    out = tmp_path / "scan.nii.gz"
    lungtk_cli("convert", "image", scan, out, check=0)
    reference = sitk.ReadImage(str(out))
    assert np.allclose(reference.GetDirection(), OBLIQUE.direction.reshape(-1), atol=1e-5)
    assert read_ct(out).geometry.isclose(OBLIQUE, atol=1e-4)
