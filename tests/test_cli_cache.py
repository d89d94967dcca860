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
