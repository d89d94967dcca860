"""Models Genesis: each deformation does what it says, the pre-training task runs, and its model file's
FeatureNet starts a nodulenet run through the engine's ``init`` setting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lungtk.core import LungtkError
from lungtk.detect.genesis import GenesisNet
from lungtk.detect.genesis_transforms import (
    GenesisRates,
    bezier_curve,
    flips,
    genesis_pair,
    inpaint,
    local_shuffle,
    nonlinear,
    outpaint,
)
from lungtk.detect.nodulenet import NoduleNet
from lungtk.train.config import resolve_config
from lungtk.train.modelfile import init_from, save_model
from lungtk.train.run import check_init
from lungtk.train.task import create_task, find_task

SHAPE = (16, 32, 32)


def _cube(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(SHAPE).astype(np.float32)


def test_flips_move_input_and_target_together_and_are_undone_by_flipping_back():
    x = _cube()
    for seed in range(20):
        a, b = flips(x, x.copy(), np.random.default_rng(seed), rate=0.9)
        assert np.array_equal(a, b) and a.shape == SHAPE
        restored = [
            np.flip(a, axes) if axes else a for k in range(4) for axes in itertools.combinations(range(3), k)
        ]
        assert any(np.array_equal(r, x) for r in restored)
    unchanged, _ = flips(x, x, np.random.default_rng(0), rate=0.0)
    assert np.array_equal(unchanged, x)


def test_local_shuffle_permutes_voxels_within_small_blocks():
    x = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)  # every voxel distinct
    one = local_shuffle(x, np.random.default_rng(1), blocks=1)
    changed = np.argwhere(one != x)
    assert len(changed) > 0
    span = changed.max(axis=0) - changed.min(axis=0) + 1
    assert np.all(span <= np.maximum(np.asarray(SHAPE) // 10, 1))  # inside one block of a tenth
    assert np.array_equal(np.sort(one, axis=None), np.sort(x, axis=None))  # a permutation
    many = local_shuffle(x, np.random.default_rng(2), blocks=10_000)
    assert many.shape == SHAPE and np.isin(many, x).all() and (many != x).mean() > 0.3
    # each voxel moved at most a block's size
    where = {v: np.unravel_index(int(v), SHAPE) for v in many.ravel()[:200]}
    moved = [
        np.abs(np.subtract(where[v], np.unravel_index(i, SHAPE))) for i, v in enumerate(many.ravel()[:200])
    ]
    assert np.max(moved, axis=0).tolist() <= [1, 3, 3]


def test_nonlinear_intensity_is_a_monotone_map_of_the_unit_interval():
    x = _cube()
    order = np.argsort(x, axis=None)
    directions = set()
    for seed in range(10):
        y = nonlinear(x, np.random.default_rng(seed))
        assert y.shape == SHAPE and y.min() >= 0 and y.max() <= 1
        sorted_y = y.ravel()[order]
        increasing = np.all(np.diff(sorted_y) >= -1e-6)
        decreasing = np.all(np.diff(sorted_y) <= 1e-6)
        assert increasing or decreasing
        directions.add(bool(increasing))
    assert directions == {True, False}  # half of the time reversed
    xs, ys = bezier_curve(np.array([[0, 0], [0.2, 0.8], [0.6, 0.1], [1, 1]], dtype=float))
    assert (xs[0], ys[0], xs[-1], ys[-1]) == (0, 0, 1, 1)


def test_painting_fills_blocks_with_noise_or_keeps_only_windows():
    x = np.full(SHAPE, 0.5, np.float32)
    for seed in range(10):
        inner = inpaint(x, np.random.default_rng(seed))
        assert inner.min() >= 0 and inner.max() <= 1
        changed = np.argwhere(inner != 0.5)
        if len(changed):  # a block is at most a third of each side
            assert np.all((changed.max(0) - changed.min(0) + 1) <= 3 * (np.asarray(SHAPE) // 3))
        outer = outpaint(x, np.random.default_rng(seed))
        kept = outer == 0.5
        assert 0.05 < kept.mean() < 0.8 and outer.min() >= 0 and outer.max() <= 1
        # the original survives in a window of sides 3/7 to 4/7 of the cube's
        lo, hi = np.argwhere(kept).min(0), np.argwhere(kept).max(0)
        assert np.all(hi - lo + 1 >= np.asarray(SHAPE) - 4 * np.asarray(SHAPE) // 7)


def test_a_pair_is_a_deformed_input_and_the_original():
    x = _cube(3)
    rates = GenesisRates(flip=0.0, local=1.0, nonlinear=1.0, paint=1.0)
    inp, target = genesis_pair(x, np.random.default_rng(0), rates)
    assert np.array_equal(target, x) and inp.shape == SHAPE and inp.dtype == np.float32
    assert not np.allclose(inp, x) and inp.min() >= 0 and inp.max() <= 1
    same, _ = genesis_pair(x, np.random.default_rng(0), GenesisRates(0, 0, 0, 0))
    assert np.array_equal(same, x)


def _genesis_task(**extra):
    spec = find_task("genesis")
    return create_task(spec, resolve_config(spec, {"width": "0.125", "patch": "16,32,32", **extra}))


def test_the_pretraining_task_restores_deformed_patches():
    task = _genesis_task()
    assert (
        task.recipe.target == "none" and task.recipe.size == SHAPE and task.arch_args["input_range"] == [0, 1]
    )
    model = task.build_model()
    batch = {"image": torch.rand(2, 1, *SHAPE)}
    output = task.forward(model, batch)
    assert output["restored"].shape == (2, 1, *SHAPE) and float(output["restored"].detach().min()) >= 0
    loss = task.loss(output, batch)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():  # validation: the same deformations every time
        first, second = task.forward(model, batch), task.forward(model, batch)
    assert torch.equal(first["input"], second["input"])
    metric = task.metrics()
    metric.update(first, batch)
    assert set(metric.compute()) == {"mae", "mse"}
    l2 = _genesis_task(loss="l2")
    assert float(l2.loss(first, batch)) == pytest.approx(
        float((first["restored"] - first["target"]).square().mean())
    )
    with pytest.raises(LungtkError, match="values in \\[0, 1\\]"):
        _genesis_task(window="nodulenet")
    with pytest.raises(LungtkError, match="loss='l3'"):
        _genesis_task(loss="l3")


def test_genesis_weights_start_nodulenet_through_the_init_setting(tmp_path):
    torch.manual_seed(0)
    genesis = GenesisNet(width=0.125, attention="qam")
    path = save_model(
        tmp_path / "genesis.safetensors",
        genesis,
        architecture="genesis",
        arch_args={"width": 0.125, "attention": "qam", "input_range": [0.0, 1.0]},
    )
    spec = find_task("nodulenet")
    settings = {"width": "0.125", "attention": "qam", "patch": "32", "init": str(path)}
    task = create_task(spec, resolve_config(spec, settings))
    check_init(task.config, task.init_accepts)  # the engine's check: genesis is a starting point
    model = task.build_model()
    copied, total = init_from(model, path, task.init_accepts)
    backbone = genesis.feature_net.state_dict()
    assert copied == len(backbone) < total
    for name, tensor in model.feature_net.state_dict().items():
        assert torch.equal(tensor, backbone[name]), name
    assert not any(k.startswith("decoder") for k in model.state_dict())
    with pytest.raises(LungtkError, match="width=0.125, attention=qam"):
        create_task(spec, resolve_config(spec, {**settings, "attention": "none"}))
    with pytest.raises(LungtkError, match="needs 'unet'"):
        check_init(task.config, ("unet",))
    assert isinstance(model, NoduleNet)


def _write_scans(root, n=3):
    """``n`` small scans in LUNA16's layout (subset0/, annotations.csv, masks/) with one ball each."""
    from lungtk.core import Geometry
    from lungtk.ct_io import write_image

    rng = np.random.default_rng(0)
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    for i in range(n):
        geometry = Geometry((-50.0 + i, 20.0, -100.0), (1.0, 1.0, 1.0))
        hu = (-800 + rng.normal(0, 20, (40, 40, 40))).astype(np.int16)
        centre = rng.uniform(14, 26, 3)
        ball = np.linalg.norm(np.indices(hu.shape).reshape(3, -1).T - centre, axis=1).reshape(hu.shape) <= 4
        hu[ball] = 40
        write_image(root / "subset0" / f"1.2.{i}.mhd", hu, geometry)
        write_image(root / "masks" / f"1.2.{i}.mhd", ball.astype(np.uint8), geometry)
        x, y, z = geometry.irc2xyz(centre)
        rows.append(f"1.2.{i},{x:.2f},{y:.2f},{z:.2f},8")
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    return root


def test_lungtk_train_nodulenet_starts_from_genesis_weights(tmp_path, monkeypatch):
    """The engine end to end: ``init`` names a genesis file, the run trains and its model file loads in
    the detector."""
    from lungtk.core import RunOptions, get_registry
    from lungtk.train.modelfile import load_model
    from lungtk.train.run import plan, train

    monkeypatch.setenv("LUNGTK_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    genesis = save_model(
        tmp_path / "genesis.safetensors",
        GenesisNet(width=0.125),
        architecture="genesis",
        arch_args={"width": 0.125, "attention": "none", "input_range": [0.0, 1.0]},
    )
    settings = {"width": 0.125, "patch": "32", "steps": 2, "batch_size": 2, "val_every": 2, "val_patches": 2}
    settings |= {"num_workers": 0, "init": str(genesis), "rcnn_start": 0.0, "mask_start": 0.0}
    result = train(
        plan("nodulenet", _write_scans(tmp_path / "scans"), tmp_path / "run", settings, device="cpu")
    )
    assert result.step == 2 and set(result.best["metrics"]) == {"cpm", "recall", "precision", "loss"}
    header = load_model(result.model, "nodulenet").header
    assert header.metadata["preprocessing"]["window"] == "nodulenet" and header.arch_args["width"] == 0.125
    detector = (
        get_registry()
        .get("detector", "nodulenet")
        .create(RunOptions(weights=result.model), {"tile": 32, "overlap": 8})
    )
    assert detector.spacing_xyz == (1.0, 1.0, 1.0)
