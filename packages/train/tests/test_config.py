import pytest

from lungtk.core import LungtkError
from lungtk.core.registry import ComponentSpec
from lungtk.train.config import (
    ENGINE_DEFAULTS,
    ENGINE_HELP,
    differences,
    parse_patch,
    parse_set,
    parse_spacing,
    read_config_file,
    resolve_config,
    to_toml,
    total_steps,
    val_every,
)

SPEC = ComponentSpec("demo", "task", "x:y", settings={"lr": 0.5, "width": 4, "patch": "32"})


def test_every_engine_setting_is_documented():
    assert set(ENGINE_DEFAULTS) == set(ENGINE_HELP)


def test_task_defaults_override_the_engine_and_add_their_own():
    config = resolve_config(SPEC, {"steps": "7"})
    assert config["lr"] == 0.5 and config["width"] == 4 and config["optimizer"] == "sgd"
    assert config["steps"] == 7 and isinstance(config["steps"], int)
    assert total_steps(config) == 7
    assert total_steps({**config, "steps": 0, "epochs": 3, "steps_per_epoch": 5}) == 15
    assert val_every(config) == config["steps_per_epoch"]


def test_unknown_and_invalid_settings_say_what_to_do():
    with pytest.raises(LungtkError, match="no setting 'widht'; did you mean 'width'"):
        resolve_config(SPEC, {"widht": 3})
    with pytest.raises(LungtkError, match="did you mean 'adamw'"):
        resolve_config(SPEC, {"optimizer": "adamww"})
    with pytest.raises(LungtkError, match="pos_fraction=1.5: use a value between 0 and 1"):
        resolve_config(SPEC, {"pos_fraction": 1.5})
    with pytest.raises(LungtkError, match="expected a whole number"):
        resolve_config(SPEC, {"steps": "ten"})
    with pytest.raises(LungtkError, match="patch='32,32'"):
        resolve_config(SPEC, {"patch": "32,32"})


def test_patch_and_spacing():
    assert parse_patch("32") == (32, 32, 32)
    assert parse_patch("16,32,48") == (16, 32, 48)
    assert parse_spacing("native") is None
    assert parse_spacing("0.7,0.7,1.25") == (0.7, 0.7, 1.25)
    assert parse_spacing("1") == (1.0, 1.0, 1.0)


def test_set_accepts_the_task_prefix():
    assert parse_set(["lr=0.1", "demo.width=8"], "demo") == {"lr": "0.1", "width": "8"}
    with pytest.raises(LungtkError, match="KEY=VALUE"):
        parse_set(["lr"], "demo")


def test_config_toml_reads_back_as_the_same_configuration(tmp_path):
    config = resolve_config(SPEC, {"seed": 3, "init": 'a "quoted" path'})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config, {"task": "demo", "data": "/d"}))
    again = read_config_file(path)
    assert again.pop("[run]") == {"task": "demo", "data": "/d"}
    assert resolve_config(SPEC, again) == config


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = [1, 2]\n")
    with pytest.raises(LungtkError, match="single values"):
        read_config_file(bad)
    bad.write_text("lr = \n")
    with pytest.raises(LungtkError, match="not valid TOML"):
        read_config_file(bad)
    with pytest.raises(LungtkError, match="no such file"):
        read_config_file(tmp_path / "missing.toml")


def test_differences_ignore_what_does_not_change_results():
    old = resolve_config(SPEC, {})
    new = resolve_config(SPEC, {"num_workers": 7, "log_every": 3, "lr": 0.25})
    assert differences(old, new) == ["lr: 0.5 -> 0.25"]


def test_a_run_whose_schedule_ignores_its_length_may_change_its_length_on_resume():
    old = {"schedule": "constant", "steps": 1500, "lr": 0.1}
    assert differences(old, {**old, "steps": 1000}) == []
    assert differences({**old, "schedule": "plateau"}, {**old, "schedule": "plateau", "epochs": 9}) == []
    cosine = {**old, "schedule": "cosine"}  # its lr at a step depends on the total
    assert differences(cosine, {**cosine, "steps": 1000}) == ["steps: 1500 -> 1000"]
    assert differences(old, {**old, "schedule": "step", "steps": 1000}) == [
        "schedule: 'constant' -> 'step'",
        "steps: 1500 -> 1000",
    ]
