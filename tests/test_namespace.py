"""`lungtk` is a PEP 420 namespace shared by separately installable distributions."""

import tomllib
from pathlib import Path

import lungtk

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = [*sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml")), ROOT / "cli"]


def _name(member: Path) -> str:
    return tomllib.loads((member / "pyproject.toml").read_text())["project"]["name"]


def test_no_member_ships_a_lungtk_init():
    # every lungtk distribution the workspace installs is a member checked here (the example plugin has
    # its own top-level name)
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    installed = {d.split("[")[0] for d in root if d.startswith("lungtk") and d != "lungtk-example-plugin"}
    assert {_name(m) for m in MEMBERS} == installed
    for member in MEMBERS:
        src = member / "src" / "lungtk"
        assert src.is_dir(), member
        assert not (src / "__init__.py").exists(), f"{member.name} must not ship lungtk/__init__.py"
        (sub,) = [p for p in src.iterdir() if p.is_dir() and p.name != "__pycache__"]
        assert (sub / "__init__.py").is_file()


def test_lungtk_is_a_namespace_spanning_the_members():
    assert getattr(lungtk, "__file__", None) is None
    roots = {Path(p).resolve() for p in lungtk.__path__}
    assert {m / "src" / "lungtk" for m in MEMBERS} <= roots


def test_example_plugin_uses_its_own_top_level_name():
    assert (ROOT / "plugins/example/src/lungtk_example_plugin/__init__.py").is_file()
    assert not (ROOT / "plugins/example/src/lungtk").exists()
