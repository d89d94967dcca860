import sys

import pytest

from lungtk.core import ComponentSpec, DuplicateComponentError, LungtkError, Registry, UnknownComponentError


def spec(name, kind="detector", factory="collections:OrderedDict", dist="pkg-a"):
    return ComponentSpec(name=name, kind=kind, factory=factory, distribution=dist, version="1.0")


def test_get_and_create_resolve_an_import_path():
    registry = Registry()
    registry.add(spec("blob"))
    built = registry.create("detector", "blob", a=1)
    assert dict(built) == {"a": 1}
    assert registry.names("detector") == ["blob"]
    assert registry.names("segmenter") == []


def test_factories_are_not_imported_until_built(tmp_path, monkeypatch):
    (tmp_path / "lazy_mod_for_registry_test.py").write_text("class Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    registry.add(spec("lazy", factory="lazy_mod_for_registry_test:Thing"))
    assert "lazy_mod_for_registry_test" not in sys.modules
    registry.create("detector", "lazy")
    assert "lazy_mod_for_registry_test" in sys.modules


def test_duplicate_names_name_both_providers():
    registry = Registry()
    registry.add(spec("blob", dist="pkg-a"))
    with pytest.raises(DuplicateComponentError) as info:
        registry.add(spec("blob", dist="pkg-b"))
    assert "pkg-a 1.0" in str(info.value) and "pkg-b 1.0" in str(info.value)
    registry.add(spec("blob", kind="segmenter", dist="pkg-b"))  # same name, other kind: fine


def test_unknown_name_suggests_close_ones():
    registry = Registry()
    for name in ("nodulenet", "blob", "resunet"):
        registry.add(spec(name))
    with pytest.raises(UnknownComponentError) as info:
        registry.get("detector", "nodulnet")
    message = str(info.value)
    assert "did you mean 'nodulenet'" in message
    assert "available: blob, nodulenet, resunet" in message


def test_unknown_name_in_empty_kind_says_none_installed():
    with pytest.raises(UnknownComponentError, match="no classifier is installed"):
        Registry().get("classifier", "size")


def test_broken_import_path_is_a_clear_error():
    registry = Registry()
    registry.add(spec("ghost", factory="no_such_module_xyz:Thing"))
    with pytest.raises(LungtkError, match="detector 'ghost' from pkg-a 1.0 cannot be loaded"):
        registry.create("detector", "ghost")
