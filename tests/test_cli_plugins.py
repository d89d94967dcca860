import json
import os
import subprocess
import sys

import numpy as np

from lungtk.core import Geometry
from lungtk.ct_io import write_image


def test_help_lists_groups_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from lungtk.cli.main import run\n"
        "try:\n    run(['--help'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('torch', 'SimpleITK', 'nibabel', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "plugins" in out and "example" in out
    assert out.strip().endswith("HEAVY=")


def test_version(lungtk_cli):
    proc = lungtk_cli("--version", check=0)
    assert proc.stdout.startswith("lungtk 0.")


def test_plugins_list_json_shows_the_example_plugin_from_installed_metadata(lungtk_cli):
    proc = lungtk_cli("plugins", "list", "--json", check=0)
    infos = {i["name"]: i for i in json.loads(proc.stdout)}
    example = infos["example"]
    assert example["distribution"] == "lungtk-example-plugin"
    assert example["status"] == "loaded"
    assert {"kind": "detector", "name": "example-brightest"} in [
        {k: c[k] for k in ("kind", "name")} for c in example["components"]
    ]


def test_a_broken_plugin_shows_as_failed_and_help_still_works(lungtk_cli, plugin_site, plugin_sources):
    plugin_site.add("fake-broken", plugin_sources["broken"], version="0.1")
    env = {"PYTHONPATH": str(plugin_site.root)}
    lungtk_cli("--help", env=env, check=0)
    table = lungtk_cli("plugins", "list", env=env, check=0).stdout
    assert "fake-broken" in table and "failed" in table and "broken on purpose" in table
    infos = {i["name"]: i for i in json.loads(lungtk_cli("plugins", "list", "--json", env=env).stdout)}
    assert infos["fake-broken"]["status"] == "failed"
    assert infos["example"]["status"] == "loaded"


def test_strict_plugins_fail_in_one_line_without_traceback(lungtk_cli, plugin_site, plugin_sources):
    plugin_site.add("fake-broken", plugin_sources["broken"], version="0.1")
    env = {"PYTHONPATH": str(plugin_site.root), "LUNGTK_STRICT_PLUGINS": "1"}
    proc = lungtk_cli("--help", env=env)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fake-broken" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    debug = lungtk_cli("--debug", "--help", env=env)
    assert "Traceback" in debug.stderr


def test_disabled_plugin_is_blocked_and_its_commands_vanish(lungtk_cli):
    env = {"LUNGTK_DISABLE_PLUGINS": "example"}
    infos = {i["name"]: i for i in json.loads(lungtk_cli("plugins", "list", "--json", env=env).stdout)}
    assert infos["example"]["status"] == "blocked"
    assert lungtk_cli("example", "--help", env=env).returncode != 0


def test_example_plugin_command_finds_a_planted_blob(lungtk_cli, tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(-800, 20, size=(40, 64, 64)).astype(np.int16)
    z, y, x = np.mgrid[:40, :64, :64]
    geometry = Geometry(np.array([-50.0, 20.0, -100.0]), np.array([0.8, 0.8, 1.5]), np.eye(3))
    centre_irc = np.array([22, 30, 41])
    r_mm = np.sqrt((((np.stack([z, y, x], -1) - centre_irc) * geometry.spacing_irc) ** 2).sum(-1))
    volume[r_mm <= 4.5] = 40
    path = write_image(tmp_path / "scan-1.mhd", volume, geometry)
    proc = lungtk_cli("example", "blobs", path, "--top", "1", check=0)
    header, row = proc.stdout.strip().splitlines()
    assert header == "seriesuid,coordX,coordY,coordZ,probability"
    fields = row.split(",")
    assert fields[0] == "scan-1"
    found = np.array([float(v) for v in fields[1:4]])
    np.testing.assert_allclose(found, geometry.irc2xyz(centre_irc), atol=1.6)
