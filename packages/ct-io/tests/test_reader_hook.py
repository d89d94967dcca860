"""``read_ct`` asks plugins (hook ``lungtk_ct_reader``) before its built-in readers."""

import time

import numpy as np
import pytest

import lungtk.core
from lungtk.core import Geometry, LungtkError, Plugins
from lungtk.ct_io import CTVolume, read_ct, write_image

GEOMETRY = Geometry(np.array([-10.0, 20.0, -30.0]), np.array([0.7, 0.8, 1.5]), np.eye(3))

# Reads "*.fake" files: a text file holding one number, the value of every voxel of a 4x5x6 volume.
FAKE_FORMAT = """
from types import SimpleNamespace

import numpy as np

from lungtk.core import Geometry, hookimpl

def read(path):
    value = float(path.read_text())
    geometry = Geometry(np.array([-10.0, 20.0, -30.0]), np.array([0.7, 0.8, 1.5]), np.eye(3))
    return SimpleNamespace(array=np.full((4, 5, 6), value, np.float32), geometry=geometry, series_uid="fake-1")

@hookimpl
def lungtk_ct_reader(path):
    return read if path.suffix == ".fake" else None
"""

# Takes over MHD: reads it with the built-in reader and adds 1000 HU.
TAKES_OVER_MHD = """
from lungtk.core import hookimpl
from lungtk.ct_io import read_ct

def read(path):
    ct = read_ct(path, use_plugins=False)
    return ct.with_array(ct.array + 1000)

@hookimpl
def lungtk_ct_reader(path):
    return read if path.suffix == ".mhd" else None
"""

ANSWERS = """
from lungtk.core import hookimpl

def read(path):
    {body}

@hookimpl
def lungtk_ct_reader(path):
    return read
"""


@pytest.fixture
def with_plugins(plugin_site, monkeypatch):
    """``install(dist, source)``: read_ct now sees the plugins installed so far (and nothing else)."""

    def install(dist, source):
        plugin_site.add(dist, source)
        plugins = Plugins(strict=False, disabled=()).load_entry_points(plugin_site.entry_points())
        monkeypatch.setattr(lungtk.core, "get_plugins", lambda: plugins)
        return plugins

    return install


@pytest.fixture
def mhd(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    return write_image(tmp_path / "scan-7.mhd", array, GEOMETRY), array


def test_read_ct_uses_a_plugin_reader_and_the_built_in_ones_for_the_rest(with_plugins, tmp_path, mhd):
    with_plugins("fake-format", FAKE_FORMAT)
    (tmp_path / "scan.fake").write_text("-512")
    ct = read_ct(tmp_path / "scan.fake")
    assert isinstance(ct, CTVolume) and ct.series_uid == "fake-1" and ct.path == tmp_path / "scan.fake"
    assert ct.shape == (4, 5, 6) and np.all(ct.array == -512) and ct.geometry == GEOMETRY
    path, array = mhd  # the plugin answers None for it
    ct = read_ct(path)
    assert ct.series_uid == "scan-7" and np.array_equal(ct.array, array)


def test_a_plugin_can_take_over_a_built_in_format(with_plugins, mhd):
    with_plugins("mhd-plus", TAKES_OVER_MHD)
    path, array = mhd
    assert np.array_equal(read_ct(path).array, array + 1000)
    assert np.array_equal(read_ct(path, use_plugins=False).array, array)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return 42", r"reader of plugin 'fake-junk' from fake-junk 1\.0 returned a int, not a volume"),
        (
            "import types; return types.SimpleNamespace(array=None, geometry='LPS', series_uid='x')",
            "reader of plugin 'fake-junk' from fake-junk 1.0 returned a SimpleNamespace, not a volume",
        ),
        (
            "import numpy as np; from lungtk.core import Geometry\n"
            "    return type('V', (), dict(array=np.zeros((3, 3)), series_uid='x',"
            " geometry=Geometry(np.zeros(3), np.ones(3), np.eye(3))))()",
            "reader of plugin 'fake-junk' from fake-junk 1.0 returned an unusable volume: .*must be 3D",
        ),
        (
            "raise RuntimeError('cannot parse the header')",
            "the reader of plugin 'fake-junk' from fake-junk 1.0 failed: RuntimeError: cannot parse the header"
            ".*LUNGTK_DISABLE_PLUGINS=fake-junk",
        ),
    ],
    ids=["not-a-volume", "bad-geometry", "2d-array", "raises"],
)
def test_a_plugin_reader_that_misbehaves_is_a_user_error_naming_it(with_plugins, mhd, body, message):
    with_plugins("fake-junk", ANSWERS.format(body=body))
    with pytest.raises(LungtkError, match=message) as error:
        read_ct(mhd[0])
    assert str(mhd[0]) in str(error.value)


def test_a_reader_hook_that_raises_is_a_user_error_naming_the_plugin(with_plugins, mhd):
    with_plugins(
        "fake-hook", "from lungtk.core import hookimpl\n\n@hookimpl\ndef lungtk_ct_reader(path):\n    1 / 0\n"
    )
    with pytest.raises(LungtkError, match="plugin 'fake-hook' from fake-hook 1.0 failed when asked"):
        read_ct(mhd[0])


def test_asking_plugins_costs_little_next_to_a_read(mhd):
    path, _ = mhd
    lungtk.core.get_plugins()  # loaded once per process, then cached
    repeats = 50
    started = time.perf_counter()
    for _ in range(repeats):
        read_ct(path, use_plugins=False)
    built_in = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeats):
        read_ct(path)
    with_plugins = time.perf_counter() - started
    assert with_plugins < 1.5 * built_in + 0.05, (with_plugins, built_in)
