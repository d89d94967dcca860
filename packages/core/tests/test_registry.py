import itertools
import sys

import pytest

from lungtk.core import (
    ComponentSpec,
    DuplicateComponentError,
    LungtkError,
    Registry,
    RunOptions,
    UnknownComponentError,
)
from lungtk.core.registry import FIRST_PARTY, is_first_party


def spec(name, kind="detector", factory="types:SimpleNamespace", dist="pkg-a", **extra):
    return ComponentSpec(name=name, kind=kind, factory=factory, distribution=dist, version="1.0", **extra)


def test_get_and_create_resolve_an_import_path():
    registry = Registry()
    registry.add(spec("blob", factory="types:SimpleNamespace"))
    with pytest.raises(TypeError):  # SimpleNamespace takes no positional argument: the factory was called
        registry.create("detector", "blob", RunOptions(batch_size=3))
    registry.add(spec("echo", factory="builtins:list"))
    with pytest.raises(TypeError, match="not iterable"):  # list(options): received exactly one RunOptions
        registry.create("detector", "echo")
    assert registry.names("detector") == ["blob", "echo"]
    assert registry.names("segmenter") == []


def _echo(options):
    return options


def test_factory_receives_typed_settings_with_defaults_and_user_values():
    component = spec("blob", factory=_echo, settings={"top": 10, "sigma": 1.5, "fast": False, "mode": "a"})
    got = component.create(RunOptions(device="cpu", batch_size=4), {"top": "25", "fast": "yes"})
    assert dict(got.settings) == {"top": 25, "sigma": 1.5, "fast": True, "mode": "a"}
    assert type(got.settings["top"]) is int and got.batch_size == 4 and got.weights is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"topp": "3"}, "has no setting 'topp'; did you mean 'top'"),
        ({"top": "2.5"}, "expected a whole number"),
        ({"sigma": "nan"}, "expected a finite number"),
        ({"sigma": "wide"}, "expected a number"),
        ({"fast": "maybe"}, "expected true or false"),
    ],
)
def test_bad_settings_are_clear_errors(given, message):
    component = spec("blob", factory=_echo, settings={"top": 10, "sigma": 1.5, "fast": False})
    with pytest.raises(LungtkError, match=message):
        component.create(RunOptions(), given)


def test_shipped_weights_resolve_to_package_data_and_can_be_overridden(tmp_path):
    shipped = spec("size", factory=_echo, default_weights="lungtk.core:hookspecs.py")
    path = shipped.weights_path()
    assert path is not None and path.name == "hookspecs.py" and path.is_file() and path.parent.name == "core"
    missing = spec("ghost", factory=_echo, default_weights="lungtk.core:weights/none.safetensors")
    with pytest.raises(LungtkError, match="shipped weights .*none.safetensors are missing.*--weights ghost="):
        missing.create()
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"x")
    assert missing.create(RunOptions(weights=mine)).weights == mine
    with pytest.raises(LungtkError, match="does not exist"):
        missing.create(RunOptions(weights=tmp_path / "absent.safetensors"))


def test_default_weights_must_name_a_package():
    with pytest.raises(ValueError, match="package:relative/path"):
        spec("x", default_weights="weights/x.safetensors")


def test_factories_are_not_imported_until_built(tmp_path, monkeypatch):
    (tmp_path / "lazy_mod_for_registry_test.py").write_text(
        "class Thing:\n    def __init__(self, options):\n        self.options = options\n"
    )
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


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_offers_are_settled_the_same_whatever_their_order(order):
    real = spec("blob", dist="lungtk-detect")
    squatters = [spec("blob", dist="third-a"), spec("blob", dist="third-b")]
    offers = [real, *squatters]
    registry = Registry()
    for i in order:
        registry.offer(offers[i])
    assert registry.get("detector", "blob") is real and registry.conflict(real) is None
    assert [registry.conflict(s) for s in squatters] == [
        "detector 'blob' of third-a 1.0 is ignored: lungtk-detect 1.0 provides it",
        "detector 'blob' of third-b 1.0 is ignored: lungtk-detect 1.0 provides it",
    ]
    registry.remove(real)  # the first-party package failed: two third parties are left, neither wins
    with pytest.raises(
        DuplicateComponentError, match="both third-a 1.0 and third-b 1.0, so lungtk uses neither"
    ):
        registry.get("detector", "blob")
    assert registry.names("detector") == [] and len(registry) == 0
    assert "also provides it" in registry.conflict(squatters[0])
    registry.remove(squatters[1])
    assert registry.get("detector", "blob") is squatters[0] and registry.conflict(squatters[0]) is None


def test_two_first_party_offers_are_ambiguous_too():
    registry = Registry()
    registry.offer(spec("blob", dist="lungtk-detect"))
    registry.offer(spec("blob", dist="lungtk_seg"))  # names compare as PEP 503 normalises them
    registry.offer(spec("blob", dist="third-a"))
    with pytest.raises(DuplicateComponentError, match="lungtk-detect 1.0, lungtk_seg 1.0 and third-a 1.0"):
        registry.get("detector", "blob")


def test_first_party_is_the_workspace():
    assert is_first_party("lungtk-detect") and is_first_party("Lungtk_CT.IO") and is_first_party("lungtk")
    assert not is_first_party("lungtk-example-plugin") and not is_first_party("fake-dist")
    assert {"lungtk-core", "lungtk-train", "lungtk-pipeline"} <= FIRST_PARTY


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


def test_describe_shows_settings_and_whether_the_shipped_weights_are_there():
    shipped = spec("a", factory=_echo, default_weights="lungtk.core:hookspecs.py", settings={"k": 2})
    missing = spec("b", factory=_echo, default_weights="lungtk.core:weights/none.safetensors")
    assert shipped.describe()["settings"] == {"k": 2}
    assert shipped.describe()["weights"]["exists"] is True
    assert missing.describe()["weights"] == {
        "default": "lungtk.core:weights/none.safetensors",
        "path": str(missing.weights_path()),
        "exists": False,
    }
    assert spec("c").describe()["weights"] is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "raise RuntimeError('needs CUDA 13')\n",
            r"importing it raised RuntimeError: needs CUDA 13; report this",
        ),
        ("import sys\nsys.exit(5)\n", r"importing it raised SystemExit: 5"),
        ("x = 1 / 0\n", r"importing it raised ZeroDivisionError"),
    ],
)
def test_a_module_that_fails_as_it_is_imported_is_a_clear_error(tmp_path, monkeypatch, source, message):
    module = f"broken_factory_{abs(hash(source))}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    registry.add(spec("ghost", factory=f"{module}:Thing"))
    with pytest.raises(LungtkError, match=rf"detector 'ghost' from pkg-a 1.0 cannot be loaded .*{message}"):
        registry.create("detector", "ghost")


def test_weights_for_a_component_that_takes_none_are_an_error(tmp_path):
    from lungtk.core import LungtkError, RunOptions
    from lungtk.core.registry import ComponentSpec

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    classical = ComponentSpec("grow", "segmenter", lambda o: o, takes_weights=False)
    with pytest.raises(LungtkError, match="'grow' .* loads no model file; drop its --weights"):
        classical.options_for(RunOptions(weights=model))
    assert classical.options_for(RunOptions()).weights is None
    learned = ComponentSpec("net", "segmenter", lambda o: o)
    assert learned.options_for(RunOptions(weights=model)).weights == model
