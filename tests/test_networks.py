"""Every registered network, the same way (as timm tests every model): built at a tiny width from what it
declares, a forward and a backward pass; and every component's shipped weights load through the one
model-file loader into the architecture they name."""

from __future__ import annotations

import pytest
import torch

from lungtk.core import get_registry
from lungtk.train.architectures import architecture_names, get_architecture
from lungtk.train.modelfile import load_model, read_header

ARCHITECTURES = architecture_names()


def test_the_seed_networks_are_registered():
    seeds = {"unet", "resunet", "unet25d", "unet3d-res", "dilated-unet", "nodulenet", "genesis"}
    assert seeds <= set(ARCHITECTURES)


def _tensors(out):
    """Every floating-point tensor in a network's output (a tensor, or tuples, lists and dicts of them)."""
    if torch.is_tensor(out):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, tuple | list):
        return [t for o in out for t in _tensors(o)]
    return []


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_forward_and_backward_at_tiny_width(name):
    builder = get_architecture(name)
    tiny = getattr(builder, "TINY", None)
    assert tiny is not None, f"architecture {name} declares no TINY configuration for smoke tests"
    torch.manual_seed(0)
    model = builder(**tiny["args"])
    x = torch.randn(2, *tiny["input"])
    out = model(x)
    outputs = _tensors(out)
    if not isinstance(out, dict):  # a detector returns a dict of its heads' outputs (NoduleNet)
        seg = outputs[0]
        dense = seg.ndim == x.ndim  # segmentation: a map the size of the input; classification: (B, classes)
        fits = seg.shape[2:] == x.shape[2:] if dense else seg.ndim == 2
        assert seg.shape[0] == 2 and fits, (name, seg.shape)
    assert outputs and all(torch.isfinite(o).all() for o in outputs)
    sum(o.float().square().mean() for o in outputs).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


SHIPPED = [spec for spec in get_registry() if spec.default_weights is not None]


@pytest.mark.parametrize("spec", SHIPPED, ids=[f"{s.kind}-{s.name}" for s in SHIPPED])
def test_shipped_weights_load(spec):
    path = spec.weights_path()
    assert path is not None and path.is_file(), f"{spec.kind} {spec.name}: shipped weights {path} are missing"
    header = read_header(path)
    assert path.stat().st_size < 10 * 2**20 and header.metadata["dtype"] == "float16"
    loaded = load_model(path, header.architecture)
    assert not loaded.model.training
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    # the component itself builds from its shipped weights
    assert spec.create() is not None
