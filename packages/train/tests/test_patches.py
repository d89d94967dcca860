import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io import write_image
from lungtk.ct_io.preprocess import get_window as parse_window
from lungtk.train.data.patches import PatchDataset, PatchGeometry
from lungtk.train.data.sources import ScanRecord


@pytest.fixture
def ramp(tmp_path):
    """A scan whose HU grow by 10 per slice, with 2 mm slices and a nodule mask in one corner."""
    hu = (np.arange(30, dtype=np.int16)[:, None, None] * 10 - 1000) * np.ones((1, 20, 20), np.int16)
    geometry = Geometry(origin=(0, 0, 0), spacing=(1.0, 1.0, 2.0))
    image = write_image(tmp_path / "ramp.mhd", hu, geometry)
    mask = np.zeros(hu.shape, np.uint8)
    mask[:5, :5, :5] = 1
    labels = write_image(tmp_path / "ramp_mask.mhd", mask, geometry)
    return ScanRecord("ramp", image, hu.shape, (2.0, 1.0, 1.0), masks=(labels,))


def test_native_patches_are_crops(ramp):
    ds = PatchDataset([ramp], PatchGeometry((4, 4, 4)), window="luna", cache_root=ramp.image.parent / "cache")
    image, mask = ds.extract(0, (10.2, 10, 10))
    assert image[:, 0, 0].tolist() == [-920, -910, -900, -890]  # slices 8..11
    assert not mask.any()
    image, mask = ds.extract(0, (1, 1, 1))  # padded outside the scan, mask too
    assert image[0, 0, 0] <= -1000 and mask[2:, 2:, 2:].all() and not mask[0].any()


def test_resampled_patches_share_one_mapping_for_image_and_mask(ramp):
    ds = PatchDataset(
        [ramp],
        PatchGeometry((4, 4, 4), (1.0, 1.0, 1.0)),
        window="luna",
        cache_root=ramp.image.parent / "cache",
    )
    assert ds.geometry.extent(ramp.spacing_irc).tolist() == [2.0, 4.0, 4.0]
    image, mask = ds.extract(0, (10.0, 10, 10))
    assert np.allclose(np.diff(image[:, 0, 0]), 5.0)  # 1 mm steps on 2 mm slices
    assert np.allclose(image[0], image[0, 0, 0])
    image, mask = ds.extract(0, (2.0, 4.0, 4.0))
    # mask voxels < 5 on every axis: index (2 + (k - 1.5) / 2) < 4.5 -> all k; rows 4 + (k - 1.5) < 4.5 -> k <= 1
    assert mask[:, :2, :2].all() and not mask[:, 2:, :].any()


def test_windows():
    assert parse_window("unit")(np.array([-1024.0, 400.0])).tolist() == [-1.0, 1.0]
    assert parse_window("-1000,400")(np.array([-2000.0, -300.0, 900.0])).tolist() == [0.0, 0.5, 1.0]


def test_a_patch_carries_the_class_of_the_nodule_inside_it():
    from types import SimpleNamespace

    from lungtk.train.data.sources import annotation_label

    record = ScanRecord(
        uid="s",
        image=None,  # type: ignore[arg-type]
        shape=(40, 40, 40),
        spacing_irc=(2.0, 1.0, 1.0),
        positives=np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 22.0]]),
        positive_labels=np.array([2, 0]),
    )
    ds = PatchDataset([record], PatchGeometry((8, 16, 16), (1.0, 1.0, 1.0)))  # spans 4 x 16 x 16 native
    assert ds.label_at(0, (10.0, 10.0, 12.0)) == 2  # both inside the patch's 16 columns: the nearest
    assert ds.label_at(0, (10.0, 10.0, 20.0)) == 0
    assert ds.label_at(0, (13.0, 10.0, 10.0)) == -1  # 3 slices off: outside the 4-slice extent
    rated = SimpleNamespace(texture=1.5, malignancy=4.0, malignant=None)
    assert annotation_label(rated, "texture") == 0 and annotation_label(rated, "malignancy") == 1
    assert annotation_label(SimpleNamespace(texture=None, malignancy=None, malignant=None), "texture") == -1
