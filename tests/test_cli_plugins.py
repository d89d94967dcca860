import json
import os
import subprocess
import sys

import numpy as np
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from lungtk.core import Geometry, PluginInfo, PluginLoadError, Plugins
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
    (brightest,) = example["components"]
    assert brightest["settings"] == {"diameter_mm": 8.0, "top": 10, "min_hu": -400.0}
    assert brightest["weights"] is None  # a classical component ships no weights


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


@pytest.fixture
def in_process(plugin_site, monkeypatch):
    """``make(plugins=None) -> (app, plugins)``: ``build_app`` on plugins loaded now (default: everything
    installed, the plugin site included), and ``invoke(app, *args)``."""
    from lungtk.cli import main
    from lungtk.cli.commands import plugins as plugins_command

    def make(plugins=None):
        plugins = plugins or Plugins(strict=False, disabled=()).load_entry_points()
        monkeypatch.setattr(main, "get_plugins", lambda: plugins)
        monkeypatch.setattr(plugins_command, "get_plugins", lambda: plugins)
        monkeypatch.setattr(plugins_command, "stdout", Console(width=400, soft_wrap=True))
        return main.build_app(), plugins

    def invoke(app, *args):
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    make.invoke = invoke
    return make


BUILTINS = ("cache", "convert", "data", "eval", "fleischner", "pipeline", "plugins", "demo", "phantom")

SHADOWING_PLUGIN = """
import typer
from lungtk.core import hookimpl

hijack = typer.Typer()

@hijack.command()
def hijacked():
    print("HIJACKED")

merged = typer.Typer()

@merged.command()
def cache():
    print("HIJACKED")

mine = typer.Typer()

@mine.command()
def hello():
    print("HELLO FROM THE PLUGIN")

@mine.command()
def bye():
    pass

@hookimpl
def lungtk_register_commands(app):
    app.registered_groups.clear()  # reaches only the plugin's own sandbox
    app.registered_commands.clear()
    app.add_typer(hijack, name="pipeline")
    app.command("demo")(hijacked)
    app.add_typer(merged)  # a group without a name brings its commands up: 'cache'
    app.add_typer(mine, name="fake-extra")
"""


def test_a_plugin_cannot_replace_or_remove_builtin_commands(in_process, plugin_site):
    plugin_site.add("fake-cmd", SHADOWING_PLUGIN)
    app, plugins = in_process()
    help_text = in_process.invoke(app, "--help").output
    assert all(name in help_text for name in (*BUILTINS, "fake-extra", "example")), help_text
    for args in (["pipeline", "--help"], ["demo", "--help"], ["cache", "--help"]):
        result = in_process.invoke(app, *args)
        assert result.exit_code == 0 and "HIJACKED" not in result.output and "hijacked" not in result.output
    assert "run" in in_process.invoke(app, "pipeline", "--help").output
    assert "HELLO FROM THE PLUGIN" in in_process.invoke(app, "fake-extra", "hello").output
    (info,) = [i for i in plugins.infos if i.distribution == "fake-cmd"]
    assert info.status == "loaded"
    assert info.warnings == [
        f"command '{name}' of fake-cmd 1.0 is refused: it is a built-in lungtk command"
        for name in ("demo", "pipeline", "cache")
    ]
    listed = {
        i["distribution"]: i for i in json.loads(in_process.invoke(app, "plugins", "list", "--json").output)
    }
    assert listed["fake-cmd"]["warnings"] == info.warnings and listed["fake-cmd"]["status"] == "loaded"


def test_protected_command_names_are_what_the_app_has_before_plugins():
    from lungtk.cli.main import PluginCommands

    app = typer.Typer()
    app.add_typer(typer.Typer(), name="train")
    app.command("models")(lambda: None)
    sandbox = PluginCommands(app)
    first, second = (PluginInfo(n, n, "1.0", f"{n}.plugin", "loaded") for n in ("first", "second"))
    staged = sandbox.stage()
    staged.add_typer(typer.Typer(), name="train")
    staged.command("models")(lambda: None)
    staged.command("fresh")(lambda: None)
    assert sandbox.commit(staged, first) == [
        "command 'models' of first 1.0 is refused: it is a built-in lungtk command",
        "command 'train' of first 1.0 is refused: it is a built-in lungtk command",
    ]
    staged = sandbox.stage()
    staged.command("fresh")(lambda: None)
    staged.callback()(lambda: None)
    assert sandbox.commit(staged, second) == [
        "the callback of second 1.0 is ignored: a plugin may not change lungtk's own options",
        "command 'fresh' of second 1.0 is refused: it is taken by plugin 'first' from first 1.0",
    ]
    assert [c.name for c in app.registered_commands] == ["models", "fresh"]
    assert len(app.registered_groups) == 1 and app.registered_callback is None


EXITS_IN_COMMANDS = """
import sys
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_detectors(registry):
    registry.add("exit-det", "collections:OrderedDict")

@hookimpl
def lungtk_register_commands(app):
    app.command("exit-cmd")(print)
    sys.exit(0)
"""


def test_a_plugin_that_exits_while_adding_commands_fails_and_the_cli_still_works(in_process, plugin_site):
    plugin_site.add("fake-exit", EXITS_IN_COMMANDS)
    app, plugins = in_process()
    result = in_process.invoke(app, "--help")
    assert result.exit_code == 0 and all(name in result.output for name in BUILTINS)
    assert "exit-cmd" not in result.output
    (info,) = [i for i in plugins.infos if i.distribution == "fake-exit"]
    assert info.status == "failed" and info.error == "SystemExit: it called sys.exit(0)"
    assert "exit-det" not in plugins.registry.names("detector")  # a failed plugin keeps nothing
    listed = {
        i["distribution"]: i for i in json.loads(in_process.invoke(app, "plugins", "list", "--json").output)
    }
    assert listed["fake-exit"]["status"] == "failed" and listed["lungtk-detect"]["status"] == "loaded"
    strict = Plugins(strict=True, disabled=()).load_entry_points(plugin_site.entry_points())
    with pytest.raises(
        PluginLoadError, match="plugin 'fake-exit' from fake-exit 1.0 failed to add its commands"
    ):
        in_process(strict)


def test_plugins_list_shows_a_squatter_warning(in_process, plugin_site):
    squatter = (
        "from lungtk.core import hookimpl\n\n@hookimpl\ndef lungtk_register_detectors(registry):\n"
        "    registry.add('blob', 'collections:OrderedDict')\n"
    )
    plugin_site.add("fake-dist", squatter)
    app, plugins = in_process()
    warning = (
        f"detector 'blob' of fake-dist 1.0 is ignored: lungtk-detect {_version('lungtk-detect')} provides it"
    )
    listed = {
        i["distribution"]: i for i in json.loads(in_process.invoke(app, "plugins", "list", "--json").output)
    }
    assert listed["fake-dist"]["warnings"] == [warning] and listed["fake-dist"]["components"] == []
    assert listed["lungtk-detect"]["warnings"] == []
    table = in_process.invoke(app, "plugins", "list").output
    assert f"warning: {warning}" in table
    assert plugins.registry.get("detector", "blob").distribution == "lungtk-detect"


def test_a_plugin_calling_sys_exit_at_import_leaves_the_real_cli_working(lungtk_cli, plugin_site):
    plugin_site.add("fake-exit", "import sys\nsys.exit(0)\n")
    env = {"PYTHONPATH": str(plugin_site.root)}
    table = lungtk_cli("plugins", "list", env=env, check=0).stdout
    assert "fake-exit" in table and "failed" in table and "SystemExit: it called sys.exit(0)" in table
    assert "pipeline" in lungtk_cli("--help", env=env, check=0).stdout


def _version(distribution):
    from importlib.metadata import version

    return version(distribution)


UNBUILDABLE_COMMAND = """
from typer.models import CommandInfo
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_commands(app):
    app.registered_commands.append(CommandInfo(name="no-callback"))  # Typer asserts when it builds this
"""


def test_a_plugin_command_typer_cannot_build_fails_the_plugin_not_the_cli(in_process, plugin_site):
    plugin_site.add("fake-unbuildable", UNBUILDABLE_COMMAND)
    app, plugins = in_process()
    result = in_process.invoke(app, "--help")
    assert result.exit_code == 0 and "pipeline" in result.output and "no-callback" not in result.output
    (info,) = [i for i in plugins.infos if i.distribution == "fake-unbuildable"]
    assert info.status == "failed" and "AssertionError" in info.error
