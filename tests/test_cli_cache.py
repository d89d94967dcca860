"""``lungtk cache warm|info|clear`` end to end (the cache itself is tested in packages/ct-io/tests)."""

import json

import numpy as np

from lungtk.core import Geometry
from lungtk.ct_io import write_image

GEOMETRY = Geometry(np.array([-120.0, -80.0, -250.0]), np.array([0.7, 0.7, 2.0]), np.eye(3))


def make_scan(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_image(path, rng.integers(-1024, 600, size=(16, 24, 32)).astype(np.int16), GEOMETRY)


def test_cache_cli_warm_info_clear(lungtk_cli, tmp_path):
    run = lungtk_cli
    for i in range(3):
        make_scan(tmp_path / "data" / f"subset{i % 2}" / f"1.2.{i}.mhd", seed=i)
    proc = run("cache", "warm", tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    assert "3 decoded, 0 already cached" in proc.stderr
    assert "2 already cached" in run("cache", "warm", tmp_path / "data" / "subset0").stderr
    info = json.loads(run("cache", "info", "--json").stdout)
    assert info["volumes"] == 3 and info["bytes"] > 3 * 16 * 24 * 32 * 2
    assert run("cache", "clear").returncode == 0
    assert json.loads(run("cache", "info", "--json").stdout)["volumes"] == 0


def test_cache_warm_on_a_data_set_root_caches_its_scans_only(lungtk_cli, tmp_path):
    root = tmp_path / "LUNA16"
    for i in range(2):
        make_scan(root / f"subset{i}" / f"1.2.{i}.mhd", seed=i)
        write_image(root / "seg-lungs-LUNA16" / f"1.2.{i}.mhd", np.zeros((16, 24, 32), np.uint8), GEOMETRY)
    proc = lungtk_cli("cache", "warm", root, check=0)
    assert "2 decoded, 0 already cached" in proc.stderr
    sources = {
        json.loads(p.read_text())["source"] for p in (tmp_path / "lungtk-cache" / "volumes").glob("*.json")
    }
    assert sources == {str(root / f"subset{i}" / f"1.2.{i}.mhd") for i in range(2)}
    make_scan(root / "subset1" / "1.2.0.mhd", seed=5)  # now one series UID in two subsets
    proc = lungtk_cli("cache", "warm", root, check=1)
    assert "two files have the series UID 1.2.0" in proc.stderr and "--series" not in proc.stderr


def test_cache_warm_goes_on_past_a_bad_scan_and_info_ignores_killed_writes(lungtk_cli, tmp_path):
    make_scan(tmp_path / "data" / "1.2.1.mhd")
    (tmp_path / "data" / "1.2.2.mhd").write_text("NDims = 3\nDimSize = 1e30 1 1\nElementDataFile = x.raw\n")
    make_scan(tmp_path / "data" / "1.2.3.mhd", seed=3)
    proc = lungtk_cli("cache", "warm", tmp_path / "data", check=1)
    assert (
        "2 decoded" in proc.stderr
        and "1.2.2.mhd" in proc.stderr
        and "1 of 3 scan(s) could not be cached" in proc.stderr
    )
    volumes = tmp_path / "lungtk-cache" / "volumes"
    killed = volumes / ".0123abcd.npy.x9y8z7w6.tmp.npy"
    killed.write_bytes(bytes(1 << 20))
    info = json.loads(lungtk_cli("cache", "info", "--json", check=0).stdout)
    assert info["volumes"] == 2 and info["bytes"] < 1 << 20  # the killed write is not an entry
