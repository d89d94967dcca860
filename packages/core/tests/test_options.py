import pytest

from lungtk.core import LungtkError, RunOptions
from lungtk.core.options import parse_assignments, parse_weights


def test_assignments_group_by_component_and_keep_dotted_names():
    parsed = parse_assignments(["resunet.overlap=0.25", "blob.top = 50", "my.plugin.sigma=2"])
    assert parsed == {"resunet": {"overlap": "0.25"}, "blob": {"top": "50"}, "my.plugin": {"sigma": "2"}}


@pytest.mark.parametrize("item", ["overlap=0.25", "resunet.overlap", ".x=1", "resunet.=1"])
def test_malformed_assignments_say_how_to_write_them(item):
    with pytest.raises(LungtkError, match=r"NAME\.KEY=VALUE"):
        parse_assignments([item])


def test_weights_need_an_existing_file(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"")
    assert parse_weights([f"resunet={model}"]) == {"resunet": model}
    with pytest.raises(LungtkError, match="is not a file"):
        parse_weights([f"resunet={tmp_path / 'nope'}"])
    with pytest.raises(LungtkError, match="NAME=FILE"):
        parse_weights([str(model)])


@pytest.mark.parametrize(("field", "value"), [("batch_size", 0), ("batch_size", 2.5), ("precision", "fp8")])
def test_run_options_validate_numbers_where_they_enter(field, value):
    with pytest.raises(LungtkError):
        RunOptions(**{field: value})


def test_run_options_settings_are_read_only():
    options = RunOptions(settings={"a": 1})
    with pytest.raises(TypeError):
        options.settings["a"] = 2  # type: ignore[index]
