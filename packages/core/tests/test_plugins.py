import pytest

from lungtk.core import PluginLoadError, Plugins


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


def test_duplicate_component_fails_the_later_plugin_and_keeps_nothing_of_it(plugin_site, plugin_sources):
    plugin_site.add("a-first", plugin_sources["good"])
    plugin_site.add("b-second", plugin_sources["duplicate"], version="1.1")
    plugins = load(plugin_site, strict=False, disabled=())
    second = next(i for i in plugins.infos if i.name == "b-second")
    assert second.status == "failed"
    assert "a-first 1.0" in second.error and "b-second 1.1" in second.error
    assert plugins.registry.get("detector", "fake-det").distribution == "a-first"
    assert "other-det" not in plugins.registry.names("detector")  # all or nothing
