"""The cache after crashes and on a bad cache folder: killed writes leave temporary files that never count
and are cleaned; damaged entries are misses; an unusable folder is one line naming it."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io import write_image
from lungtk.ct_io.cache import STALE_SECONDS, CacheError, CropCache, VolumeCache

GEOMETRY = Geometry(np.array([-12.0, -8.0, -25.0]), np.array([0.7, 0.7, 2.0]), np.eye(3))


def scan(path, seed=0):
    data = np.random.default_rng(seed).integers(-1024, 600, size=(6, 8, 10)).astype(np.int16)
    return write_image(path, data, GEOMETRY)


def killed_write(folder, name, age_s):
    """What a write killed half-way leaves: atomic_path's hidden temporary file."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.k1ll3dxx.tmp{os.path.splitext(name)[1]}"
    tmp.write_bytes(b"\x93NUMPY" + bytes(5000))
    past = time.time() - age_s
    os.utime(tmp, (past, past))
    return tmp


def test_temporary_files_do_not_count_and_stale_ones_are_removed(tmp_path):
    cache = VolumeCache(tmp_path / "cache")
    cache.get(scan(tmp_path / "a.mhd"))
    before = cache.info()
    stale = [
        killed_write(cache.dir, "0123abcd.npy", STALE_SECONDS + 60),
        killed_write(cache.dir, "0123abcd.json", STALE_SECONDS + 60),
        killed_write(cache.root / "crops", "feed.npy", 2 * STALE_SECONDS),
    ]
    live = killed_write(cache.dir, "4567abcd.npy", 5)  # another process is writing it right now
    info = cache.info()
    assert (info.volumes, info.crops, info.bytes) == (before.volumes, before.crops, before.bytes)
    assert not any(p.exists() for p in stale) and live.exists()
    assert cache.clear() > 0 and not live.exists()
    assert cache.info().bytes == 0


def test_a_write_removes_stale_temporary_files(tmp_path):
    cache = VolumeCache(tmp_path / "cache")
    stale = killed_write(cache.dir, "0123abcd.npy", STALE_SECONDS + 1)
    cache.get(scan(tmp_path / "a.mhd"))
    assert not stale.exists()


@pytest.mark.parametrize(
    "meta",
    [
        "not json",
        json.dumps([1, 2, 3]),
        json.dumps({"shape": [6, 8, 10]}),
        json.dumps({"shape": [6, 8, 10], "geometry": {"origin": [0, 0, 0], "spacing": [0, 1, 1]}}),
        json.dumps({"shape": [6, 8, 10], "geometry": {"origin": ["nan", 0, 0], "spacing": [1, 1, 1]}}),
    ],
)
def test_a_damaged_sidecar_is_a_miss_and_is_rewritten(tmp_path, meta):
    source = scan(tmp_path / "a.mhd")
    VolumeCache(tmp_path / "cache").get(source)
    (sidecar,) = (tmp_path / "cache" / "volumes").glob("*.json")
    sidecar.write_text(meta)
    fresh = VolumeCache(tmp_path / "cache")
    assert fresh.lookup(source) is None
    assert fresh.get(source).shape == (6, 8, 10)


def test_a_damaged_crop_is_recomputed(tmp_path):
    source = scan(tmp_path / "a.mhd")
    crops = CropCache(VolumeCache(tmp_path / "cache"))
    first = crops.get(source, (-10.0, -6.0, -21.0), (2, 4, 4))
    (entry,) = crops.dir.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:20])
    np.testing.assert_array_equal(crops.get(source, (-10.0, -6.0, -21.0), (2, 4, 4)), first)


def test_a_cache_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = VolumeCache(blocker)
    with pytest.raises(
        CacheError, match=f"{blocker}: cannot be the scan cache: {blocker} is a file.*LUNGTK_CACHE_DIR"
    ) as err:
        cache.get(scan(tmp_path / "a.mhd"))
    assert ".tmp" not in str(err.value) and "\n" not in str(err.value)
    assert cache.info().volumes == 0  # inspecting it still works
    with pytest.raises(CacheError, match=f"{blocker}: cannot be the scan cache: .* is a file, not a folder"):
        cache.clear()


def test_a_missing_scan_is_that_scans_error_not_the_caches(tmp_path):
    from lungtk.ct_io import CTReadError

    with pytest.raises(CTReadError, match=r"gone.mhd: not found"):
        VolumeCache(tmp_path / "cache").warm(tmp_path / "gone.mhd")


def test_a_full_disk_while_caching_names_the_cache(tmp_path, monkeypatch):
    import errno

    source = scan(tmp_path / "a.mhd")
    cache = VolumeCache(tmp_path / "cache")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CacheError, match="cache: cannot write to the scan cache: the disk is full"):
        cache.get(source)
    assert [p.name for p in cache.dir.iterdir()] == []  # nothing half-written left
