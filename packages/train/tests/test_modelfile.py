import json
import struct

import pytest
import torch

from lungtk.core import LungtkError
from lungtk.train.architectures import build_architecture, register_architecture
from lungtk.train.modelfile import describe, init_from, load_model, read_header, save_model

ARGS = {"in_channels": 1, "out_channels": 1, "widths": [2, 4]}


def _save(path, model=None, **kw):
    model = model or build_architecture("unet", ARGS)
    options = {
        "architecture": "unet",
        "arch_args": ARGS,
        "preprocessing": {"spacing": [1.0, 1.0, 1.0], "patch": [8, 8, 8], "window": "unit"},
        "task": "unet-tiny",
        "training": {"steps": 3, "config": {"lr": 0.1}},
        "metrics": {"dice": 0.5},
        **kw,
    }
    return model, save_model(path, model, **options)


def test_a_model_file_rebuilds_the_network_with_nothing_else(tmp_path):
    model, path = _save(tmp_path / "m.safetensors")
    loaded = load_model(path, "unet")
    x = torch.randn(1, 1, 8, 8, 8)
    model.eval()
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.preprocessing["spacing"] == [1.0, 1.0, 1.0] and not loaded.model.training
    info = describe(path)
    assert info["architecture"] == "unet" and info["arch_args"] == ARGS
    assert info["metrics"] == {"dice": 0.5} and info["training"]["config"] == {"lr": 0.1}
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["lungtk_version"] and info["dtypes"] == ["F32"]


def test_float16_files_load_as_float32(tmp_path):
    model, full = _save(tmp_path / "full.safetensors")
    _, half = _save(tmp_path / "half.safetensors", model=model, dtype="float16")
    assert half.stat().st_size < full.stat().st_size * 0.7
    weight = load_model(half).model.head.weight
    assert weight.dtype == torch.float32 and torch.allclose(
        weight, model.head.weight, rtol=1e-3, atol=1e-6
    )  # float16 keeps 11 bits


def test_wrong_files_get_one_clear_line(tmp_path):
    _, path = _save(tmp_path / "m.safetensors")
    with pytest.raises(
        LungtkError,
        match=r"holds a 'unet' model \(trained by task 'unet-tiny'\); segmenter 'x' needs 'resunet'",
    ):
        load_model(path, "resunet", who="segmenter 'x'")
    (tmp_path / "w.pt").write_bytes(b"PK\x03\x04 not safetensors at all")
    with pytest.raises(LungtkError, match="not a .safetensors model file"):
        read_header(tmp_path / "w.pt")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(LungtkError, match="without lungtk metadata"):
        load_model(tmp_path / "plain.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(LungtkError, match="truncated"):
        read_header(cut)
    with pytest.raises(LungtkError, match="no such model file"):
        read_header(tmp_path / "missing.safetensors")


def test_unknown_architecture_and_tensors_that_do_not_fit(tmp_path):
    model, _ = _save(tmp_path / "m.safetensors")
    save_model(tmp_path / "x.safetensors", model, architecture="unett", arch_args=ARGS)
    with pytest.raises(LungtkError, match="architecture 'unett' is not installed; did you mean 'unet'"):
        load_model(tmp_path / "x.safetensors")
    save_model(tmp_path / "y.safetensors", model, architecture="unet", arch_args={**ARGS, "widths": [2, 8]})
    with pytest.raises(LungtkError, match="has shape .* needs"):
        load_model(tmp_path / "y.safetensors")
    register_architecture("linear-test", lambda n=2: torch.nn.Linear(n, n))
    save_model(
        tmp_path / "z.safetensors", torch.nn.Linear(3, 3), architecture="linear-test", arch_args={"n": 3}
    )
    assert load_model(tmp_path / "z.safetensors").model.weight.shape == (3, 3)
    save_model(tmp_path / "z.safetensors", model, architecture="linear-test", arch_args={"n": 3})
    with pytest.raises(LungtkError, match="do not fit architecture 'linear-test'"):
        load_model(tmp_path / "z.safetensors")


def test_metadata_is_plain_json_strings(tmp_path):
    _, path = _save(tmp_path / "m.safetensors")
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + length])["__metadata__"]
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["arch_args"]) == ARGS and meta["format"] == "lungtk-model"


def test_init_copies_matching_tensors(tmp_path):
    model, path = _save(tmp_path / "m.safetensors")
    fresh = build_architecture("unet", ARGS)
    assert init_from(fresh, path, "unet") == (len(model.state_dict()), len(model.state_dict()))
    assert torch.equal(fresh.head.weight, model.head.weight)
    with pytest.raises(LungtkError, match="setting init needs 'resunet'"):
        init_from(fresh, path, "resunet")


def test_a_task_may_start_from_other_architectures_it_lists(tmp_path):
    """``Task.init_architectures``: nodulenet starts from a genesis pre-training (a different network whose
    backbone tensors share names); the engine checks the file against the task's list."""
    from lungtk.train.run import check_init
    from lungtk.train.task import PatchRecipe, Task

    model, path = _save(tmp_path / "m.safetensors")
    recipe = PatchRecipe((16, 16, 16), None, "unit", "none", "positive")
    task = Task(
        "t", "resunet", {}, lambda o, b: o, lambda: None, recipe, "dice", init_architectures=("unet",)
    )
    assert task.init_accepts == ("resunet", "unet")
    check_init({"init": str(path)}, task.init_accepts)
    fresh = build_architecture("unet", ARGS)
    assert init_from(fresh, path, task.init_accepts)[0] == len(model.state_dict())
    with pytest.raises(LungtkError, match="needs 'resunet' or 'dilated-unet'"):
        check_init({"init": str(path)}, ("resunet", "dilated-unet"))


def test_components_load_shipped_and_user_weights_through_this_loader(tmp_path, monkeypatch):
    """A component's ``default_weights`` (package data) and a user's ``--weights NAME=FILE`` both reach its
    factory as ``options.weights``, and both go through :func:`load_model`, which checks the architecture."""
    from lungtk.core import ComponentSpec, RunOptions

    package = tmp_path / "site" / "lungtk_test_weights"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _, shipped = _save(package / "weights" / "tiny.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    def factory(options):
        return load_model(options.weights, "unet", who="segmenter 'tiny-seg'")

    spec = ComponentSpec(
        "tiny-seg", "segmenter", factory, default_weights="lungtk_test_weights:weights/tiny.safetensors"
    )
    assert spec.create(RunOptions()).header.path == shipped
    _, mine = _save(tmp_path / "mine.safetensors")
    assert spec.create(RunOptions(weights=mine)).header.path == mine
    other = save_model(
        tmp_path / "other.safetensors", torch.nn.Linear(2, 2), architecture="resunet", arch_args={}
    )
    with pytest.raises(LungtkError, match="holds a 'resunet' model; segmenter 'tiny-seg' needs 'unet'"):
        spec.create(RunOptions(weights=other))


def test_float16_copies_keep_tensors_float16_cannot_hold(tmp_path):
    import torch

    from lungtk.train.modelfile import state_tensors

    state = {
        "small": torch.tensor([1.5, -600.0]),
        "huge": torch.tensor([2.0e5, 1.0]),
        "count": torch.tensor(3),
    }
    out = state_tensors(state, "float16")
    assert out["small"].dtype == torch.float16 and out["count"].dtype == torch.int64
    assert out["huge"].dtype == torch.float32 and torch.equal(out["huge"], state["huge"])


@pytest.mark.parametrize(
    ("preprocessing", "training", "expected"),
    [
        ({"target": "label", "labels": "texture"}, {}, "texture"),
        ({"target": "label"}, {"config": {"labels": "malignancy"}}, "malignancy"),  # older files
        ({"target": "mask"}, {"config": {"positive_label": "pathology"}}, "pathology"),
        ({"target": "mask"}, {"config": {"positive_label": ""}}, None),
    ],
)
def test_a_model_file_says_which_labels_it_outputs(tmp_path, preprocessing, training, expected):
    path = save_model(
        tmp_path / "m.safetensors",
        {"w": torch.zeros(2)},
        architecture="x",
        arch_args={},
        preprocessing=preprocessing,
        training=training,
    )
    assert read_header(path).labels == expected


def test_a_folder_is_not_a_model_file(tmp_path):
    with pytest.raises(LungtkError, match="is a folder; give a model file"):
        read_header(tmp_path)
