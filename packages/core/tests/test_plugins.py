from importlib.metadata import entry_points

import pytest

from lungtk.core import DuplicateComponentError, LungtkError, PluginLoadError, Plugins


def load(site, **kwargs):
    return Plugins(**kwargs).load_entry_points(site.entry_points())


def test_components_are_attributed_to_their_distribution(plugin_site, plugin_sources):
    plugin_site.add("fake-good", plugin_sources["good"], version="2.3")
    plugins = load(plugin_site, strict=False, disabled=())
    (info,) = plugins.infos
    assert (info.name, info.distribution, info.version, info.status) == (
        "fake-good",
        "fake-good",
        "2.3",
        "loaded",
    )
    assert sorted((c.kind, c.name) for c in info.components) == [
        ("classifier", "fake-cls"),
        ("detector", "fake-det"),
    ]
    spec = plugins.registry.get("detector", "fake-det")
    assert spec.provider == "fake-good 2.3" and spec.summary == "a fake detector"


def test_a_plugin_that_raises_at_import_is_reported_and_skipped(plugin_site, plugin_sources):
    plugin_site.add("fake-broken", plugin_sources["broken"], version="0.1")
    plugin_site.add("fake-good", plugin_sources["good"])
    plugins = load(plugin_site, strict=False, disabled=())
    assert {i.name: i.status for i in plugins.infos} == {"fake-broken": "failed", "fake-good": "loaded"}
    (broken,) = plugins.failed
    assert broken.distribution == "fake-broken" and broken.version == "0.1"
    assert "RuntimeError: this plugin is broken on purpose" in broken.error
    assert "Traceback" in broken.traceback
    assert plugins.registry.names("detector") == ["fake-det"]


def test_strict_mode_makes_a_failure_fatal(plugin_site, plugin_sources, monkeypatch):
    plugin_site.add("fake-broken", plugin_sources["broken"], version="0.1")
    monkeypatch.setenv("LUNGTK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'fake-broken' from fake-broken 0.1 failed"):
        load(plugin_site)


def test_disabled_plugins_are_blocked_by_entry_point_or_distribution(
    plugin_site, plugin_sources, monkeypatch
):
    plugin_site.add("fake-good", plugin_sources["good"])
    plugin_site.add("fake-broken", plugin_sources["broken"], ep_name="brk")
    monkeypatch.setenv("LUNGTK_DISABLE_PLUGINS", " brk , fake-good")
    plugins = load(plugin_site)
    assert {i.name: i.status for i in plugins.infos} == {"brk": "blocked", "fake-good": "blocked"}
    assert len(plugins.registry) == 0


def first_party_entry_point(distribution):
    (ep,) = [ep for ep in entry_points(group="lungtk") if ep.dist.name == distribution]
    return ep


def load_in_order(eps, order):
    plugins = Plugins(strict=False, disabled=())
    for i in order:
        plugins.load_entry_point(eps[i])
    return plugins


SQUATTER = """
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_detectors(registry):
    registry.add("blob", "collections:OrderedDict", summary="not the real blob")
    registry.add("squatter-own", "collections:OrderedDict")

@hookimpl
def lungtk_register_tasks(registry):
    registry.add("squatter-task", "collections:OrderedDict")
"""


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["first-party-first", "squatter-first"])
def test_first_party_wins_a_squatted_name_with_a_warning_whatever_the_order(plugin_site, order):
    plugin_site.add("fake-dist", SQUATTER)
    detect = first_party_entry_point("lungtk-detect")
    plugins = load_in_order([detect, *plugin_site.entry_points()], order)
    infos = {i.distribution: i for i in plugins.infos}
    real, squatter = infos["lungtk-detect"], infos["fake-dist"]
    assert real.status == "loaded" and real.warnings == []
    assert "blob" in [c.name for c in real.components]
    assert plugins.registry.get("detector", "blob").distribution == "lungtk-detect"
    assert squatter.status == "loaded"
    assert squatter.warnings == [
        f"detector 'blob' of fake-dist 1.0 is ignored: lungtk-detect {detect.dist.version} provides it"
    ]
    assert sorted((c.kind, c.name) for c in squatter.components) == [
        ("detector", "squatter-own"),
        ("task", "squatter-task"),
    ]
    assert plugins.registry.get("detector", "squatter-own").distribution == "fake-dist"
    assert squatter.as_dict()["warnings"] == squatter.warnings


RIVAL = """
from lungtk.core import hookimpl

@hookimpl
def lungtk_register_{kind}s(registry):
    registry.add("contested", "collections:OrderedDict")
    registry.add("own-{dist}", "collections:OrderedDict")
"""


@pytest.mark.parametrize("kind", ["detector", "task"])
@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["a-first", "b-first"])
def test_a_name_two_third_parties_register_is_ambiguous_whatever_the_order(plugin_site, order, kind):
    plugin_site.add("rival-a", RIVAL.format(kind=kind, dist="a"), version="1.0")
    plugin_site.add("rival-b", RIVAL.format(kind=kind, dist="b"), version="2.0")
    plugins = load_in_order(plugin_site.entry_points(), order)
    assert {i.distribution: i.status for i in plugins.infos} == {"rival-a": "loaded", "rival-b": "loaded"}
    with pytest.raises(DuplicateComponentError) as error:
        plugins.registry.get(kind, "contested")
    message = str(error.value)
    assert "rival-a 1.0" in message and "rival-b 2.0" in message
    assert "uninstall one" in message and "LUNGTK_DISABLE_PLUGINS=rival-a" in message
    assert plugins.registry.names(kind) == ["own-a", "own-b"]  # their other components stay
    for info in plugins.infos:
        other = "rival-b 2.0" if info.distribution == "rival-a" else "rival-a 1.0"
        (warning,) = info.warnings
        assert f"{kind} 'contested' of {info.distribution}" in warning and other in warning
        assert [c.name for c in info.components] == [f"own-{info.distribution[-1]}"]


def test_blocking_one_of_two_rivals_gives_the_name_to_the_other(plugin_site):
    plugin_site.add("rival-a", RIVAL.format(kind="detector", dist="a"))
    plugin_site.add("rival-b", RIVAL.format(kind="detector", dist="b"))
    plugins = Plugins(strict=False, disabled={"rival-a"}).load_entry_points(plugin_site.entry_points())
    assert plugins.registry.get("detector", "contested").distribution == "rival-b"
    assert all(i.warnings == [] for i in plugins.infos)


def test_a_plugin_registering_a_name_twice_fails_and_keeps_nothing(plugin_site, plugin_sources):
    twice = plugin_sources["duplicate"] + "    registry.add('other-det', 'collections:OrderedDict')\n"
    plugin_site.add("fake-twice", twice)
    plugins = load(plugin_site, strict=False, disabled=())
    (info,) = plugins.infos
    assert info.status == "failed" and "registers detector 'other-det' twice" in info.error
    assert len(plugins.registry) == 0


@pytest.mark.parametrize("source", ["good", "broken"])
def test_an_entry_point_named_like_a_first_party_one_removes_nothing(plugin_site, plugin_sources, source):
    plugin_site.add("fake-dist", plugin_sources[source], ep_name="detect")
    detect = first_party_entry_point("lungtk-detect")
    for order in [(0, 1), (1, 0)]:
        plugins = load_in_order([detect, *plugin_site.entry_points()], order)
        infos = {i.distribution: i for i in plugins.infos}
        assert infos["lungtk-detect"].status == "loaded"
        assert infos["fake-dist"].status == ("loaded" if source == "good" else "failed")
        assert plugins.pm.is_registered(detect.load())  # its hooks are still called
        assert plugins.registry.get("detector", "blob").distribution == "lungtk-detect"
        if source == "good":
            assert plugins.registry.get("detector", "fake-det").distribution == "fake-dist"
        assert {i.key for i in plugins.infos} == {"lungtk-detect:detect", "fake-dist:detect"}


EXITS = {
    "sys.exit at import": "import sys\nsys.exit(3)\n",
    "sys.exit() at import": "import sys\nsys.exit()\n",
    "BaseException at import": "class Boom(BaseException):\n    pass\n\nraise Boom('boom')\n",
    "sys.exit in a hook": (
        "import sys\nfrom lungtk.core import hookimpl\n\n@hookimpl\n"
        "def lungtk_register_segmenters(registry):\n    registry.add('x', 'a:b')\n    sys.exit(4)\n"
    ),
}


@pytest.mark.parametrize("source", EXITS.values(), ids=EXITS.keys())
def test_a_plugin_that_exits_or_raises_a_base_exception_is_reported_and_skipped(
    plugin_site, plugin_sources, source, monkeypatch
):
    plugin_site.add("fake-exit", source)
    plugin_site.add("fake-good", plugin_sources["good"])
    plugins = load(plugin_site, strict=False, disabled=())
    assert {i.name: i.status for i in plugins.infos} == {"fake-exit": "failed", "fake-good": "loaded"}
    (failed,) = plugins.failed
    assert failed.error.startswith(("SystemExit: it called sys.exit(", "Boom: boom")), failed.error
    assert plugins.registry.names("segmenter") == [] and plugins.registry.names("detector") == ["fake-det"]
    monkeypatch.setenv("LUNGTK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="plugin 'fake-exit' from fake-exit 1.0 failed to load"):
        load(plugin_site)


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(plugin_site):
    plugin_site.add("fake-interrupt", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load(plugin_site, strict=False, disabled=())


READER = """
from lungtk.core import hookimpl

@hookimpl
def lungtk_ct_reader(path):
    return {answer}
"""


def test_reader_for_asks_plugins_and_names_the_one_that_misbehaves(plugin_site):
    plugin_site.add("fake-none", READER.format(answer="None"))
    plugin_site.add("fake-junk", READER.format(answer="42"))
    plugins = load(plugin_site, strict=False, disabled={"fake-junk"})
    assert plugins.reader_for("scan.mhd") is None
    plugins = load(plugin_site, strict=False, disabled=())
    with pytest.raises(
        LungtkError, match="lungtk_ct_reader of plugin 'fake-junk' from fake-junk 1.0 returned"
    ):
        plugins.reader_for("scan.mhd")


def test_an_entry_point_to_a_first_party_module_cannot_take_it_over(plugin_site):
    plugin_site.add("fake-dist", "", ep_name="aaa", target="lungtk.detect.plugin")
    detect = first_party_entry_point("lungtk-detect")
    for order in [(0, 1), (1, 0)]:
        plugins = load_in_order([detect, *plugin_site.entry_points()], order)
        infos = {i.distribution: i for i in plugins.infos}
        assert infos["lungtk-detect"].status == "loaded" and infos["fake-dist"].status == "failed"
        assert "lungtk.detect.plugin" in infos["fake-dist"].error
        assert plugins.registry.get("detector", "blob").distribution == "lungtk-detect"
