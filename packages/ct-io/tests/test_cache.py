import os
import subprocess
import sys

import numpy as np

from lungtk.core import Geometry
from lungtk.ct_io import read_ct, write_image
from lungtk.ct_io.cache import CropCache, VolumeCache
from lungtk.ct_io.crops import crop

GEOMETRY = Geometry(np.array([-120.0, -80.0, -250.0]), np.array([0.7, 0.7, 2.0]), np.eye(3))


def make_scan(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_image(path, rng.integers(-1024, 600, size=(16, 24, 32)).astype(np.int16), GEOMETRY)


def test_cached_volume_is_a_memory_map_equal_to_the_decoded_scan(tmp_path):
    scan = make_scan(tmp_path / "1.2.3.mhd")
    cache = VolumeCache(tmp_path / "cache")
    assert cache.lookup(scan) is None
    ct = cache.get(scan)
    assert not ct.array.flags.owndata and not ct.array.flags.writeable  # a read-only file mapping
    reference = read_ct(scan)
    np.testing.assert_array_equal(ct.array, reference.array)
    assert ct.geometry == reference.geometry and ct.series_uid == "1.2.3"
    assert cache.warm(scan) is False  # already there


def test_a_changed_scan_is_decoded_again(tmp_path):
    scan = make_scan(tmp_path / "s.mhd", seed=0)
    cache = VolumeCache(tmp_path / "cache")
    first = np.array(cache.get(scan).array)
    make_scan(tmp_path / "s.mhd", seed=1)
    os.utime(scan.with_suffix(".raw"), ns=(1, 1))  # a different mtime even on coarse clocks
    second = cache.get(scan).array
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, read_ct(scan).array)


def test_a_damaged_entry_is_a_miss_not_a_crash(tmp_path):
    scan = make_scan(tmp_path / "s.mhd")
    cache = VolumeCache(tmp_path / "cache")
    cache.get(scan)
    (npy,) = cache.dir.glob("*.npy")
    npy.write_bytes(b"garbage")  # damaged between runs: a new process sees a miss and decodes again
    later = VolumeCache(tmp_path / "cache")
    assert later.lookup(scan) is None
    np.testing.assert_array_equal(later.get(scan).array, read_ct(scan).array)


def test_two_processes_warming_at_once_leave_one_good_entry(tmp_path):
    scan = make_scan(tmp_path / "s.mhd")
    root = tmp_path / "cache"
    code = f"from lungtk.ct_io.cache import VolumeCache\nfor _ in range(3):\n    VolumeCache({str(root)!r}).put({str(scan)!r}, __import__('lungtk.ct_io', fromlist=['read_ct']).read_ct({str(scan)!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    files = sorted(p.name for p in (root / "volumes").iterdir())
    assert len(files) == 2 and not any(".tmp" in f for f in files), files
    np.testing.assert_array_equal(VolumeCache(root).get(scan).array, read_ct(scan).array)


def test_crop_cache_returns_the_same_crop_as_cropping_the_scan(tmp_path):
    scan = make_scan(tmp_path / "s.mhd")
    crops = CropCache(VolumeCache(tmp_path / "cache"))
    centre = GEOMETRY.irc2xyz([8, 3, 30])  # near an edge: padded
    first = crops.get(scan, centre, (6, 8, 8))
    np.testing.assert_array_equal(first, crop(read_ct(scan), size=(6, 8, 8), center_xyz=centre).array)
    np.testing.assert_array_equal(crops.get(scan, centre, (6, 8, 8)), first)
    assert crops.volumes.info().crops == 1


def test_a_header_naming_another_data_file_is_keyed_on_that_file(tmp_path):
    """ "ElementDataFile = voxels.raw" beside "s.mhd": rewriting voxels.raw in place (same size) must not
    serve the old voxels from the cache."""
    make_scan(tmp_path / "orig.mhd", seed=0)
    (tmp_path / "orig.raw").rename(tmp_path / "voxels.raw")
    scan = tmp_path / "s.mhd"
    scan.write_text((tmp_path / "orig.mhd").read_text().replace("orig.raw", "voxels.raw"))
    cache = VolumeCache(tmp_path / "cache")
    first = np.array(cache.get(scan).array)
    make_scan(tmp_path / "other.mhd", seed=1)
    (tmp_path / "other.raw").replace(tmp_path / "voxels.raw")
    os.utime(tmp_path / "voxels.raw", ns=(1, 1))
    second = cache.get(scan).array
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(second, read_ct(scan).array)
    np.testing.assert_array_equal(VolumeCache(tmp_path / "cache").get(scan).array, second)
