import random

import numpy as np
import pytest
import torch

from lungtk.core import LungtkError
from lungtk.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class Smuggled:
    """What a malicious checkpoint carries: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_round_trip_restores_every_generator(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = {
        "kind": "last",
        "step": 7,
        "model": model.state_dict(),
        "rng": [rng_state()],
        "nested": {"a": (1, 2.0, None)},
    }
    expected = (random.random(), np.random.rand(), torch.rand(1))
    save_checkpoint(tmp_path / "last.pt", state)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["step"] == 7 and loaded["nested"] == {"a": (1, 2.0, None)}
    assert torch.equal(loaded["model"]["weight"], model.weight)
    set_rng_state(loaded["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_a_smuggled_pickle_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": "lungtk-train-checkpoint", "version": 1, "payload": Smuggled()}, path)
    with pytest.raises(LungtkError, match="refused: it holds pickled Python objects"):
        load_checkpoint(path)


def test_corrupt_and_foreign_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"model": {"w": torch.ones(100)}})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(LungtkError, match="not a readable checkpoint"):
        load_checkpoint(cut)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(LungtkError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "foreign.pt")
    with pytest.raises(LungtkError, match="not a lungtk training checkpoint .*state_dict"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save(torch.ones(2), tmp_path / "tensor.pt")
    with pytest.raises(LungtkError, match="holds Tensor"):
        load_checkpoint(tmp_path / "tensor.pt")
    with pytest.raises(LungtkError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
