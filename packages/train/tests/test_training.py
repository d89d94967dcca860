"""Training on a small synthetic data set in LUNA16's layout: patch data through the volume cache, and
the loop (loss, run folder, exact resume, early stopping, error-region sampling, out of memory)."""

import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lungtk.core import LungtkError
from lungtk.ct_io.cache import VolumeCache
from lungtk.ct_io.datasets import open_dataset
from lungtk.train import loop
from lungtk.train.checkpoint import load_checkpoint
from lungtk.train.config import read_config_file, resolve_config
from lungtk.train.data.patches import PatchDataset, PatchGeometry
from lungtk.train.data.samplers import PatchRequest, PatchSampler
from lungtk.train.data.sources import build_records, check_labels, make_splits
from lungtk.train.modelfile import describe, load_model
from lungtk.train.run import plan, train
from lungtk.train.runlog import read_metrics
from lungtk.train.task import find_task

SMALL = (48, 64, 64)
TINY = {
    "width": 2,
    "patch": "16",
    "batch_size": 2,
    "num_workers": 0,
    "lr": 0.01,
    "warmup_steps": 0,
    "augmentation": "none",
    "val_patches": 8,
    "log_every": 2,
}
"""Settings that make unet-tiny train in a fraction of a second per step on a CPU."""


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUNGTK_CACHE_DIR", str(tmp_path_factory.mktemp("lungtk-cache")))
        yield


def make_scan(rng, shape=SMALL):
    """A chest-like scan: lung-density noise inside a soft-tissue body, and two dense spheres (nodules,
    4-8 mm) with their label mask; (HU, labels, geometry, [(centre xyz, diameter)])."""
    from lungtk.core import Geometry

    spacing = np.array([0.8, 0.8, 1.5])  # x, y, z mm
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), -1) * spacing[::-1]  # irc mm
    origin = rng.uniform(-150, -50, 3)
    centre = (np.asarray(shape) - 1) / 2 * spacing[::-1]
    body = (((grid - centre) / (centre * 0.95)) ** 2).sum(-1) <= 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 15, shape)
    lung = (((grid - centre) / (centre * 0.8)) ** 2).sum(-1) <= 1
    hu[lung] = -850 + rng.normal(0, 30, int(lung.sum()))
    labels = np.zeros(shape, np.uint8)
    nodules = []
    for k in range(2):
        diameter = rng.uniform(4, 8)
        at = centre + rng.uniform(-0.35, 0.35, 3) * centre
        ball = ((grid - at) ** 2).sum(-1) <= (diameter / 2) ** 2
        hu[ball] = 30 + rng.normal(0, 15, int(ball.sum()))
        labels[ball] = k + 1
        nodules.append((origin + at[::-1], diameter))
    return hu.astype(np.int16), labels, Geometry(origin=origin, spacing=spacing), nodules


def write_scans(root, n=4, seed=1):
    """``n`` scans in LUNA16's layout: subset0/, annotations.csv, candidates.csv (the nodules as class 1,
    six random places per scan as class 0) and a lungtk-style masks/ folder. lungtk-train must not depend
    on lungtk-phantom, so its tests make their own scans."""
    from lungtk.ct_io import write_image

    rng = np.random.default_rng(seed)
    annotations = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    candidates = ["seriesuid,coordX,coordY,coordZ,class"]
    for i in range(n):
        uid = f"1.2.3.{i}"
        hu, labels, geometry, nodules = make_scan(rng)
        write_image(root / "subset0" / f"{uid}.mhd", hu, geometry)
        write_image(root / "masks" / f"{uid}.mhd", labels, geometry)
        for xyz, diameter in nodules:
            annotations.append(f"{uid},{xyz[0]:.3f},{xyz[1]:.3f},{xyz[2]:.3f},{diameter:.3f}")
            candidates.append(f"{uid},{xyz[0]:.3f},{xyz[1]:.3f},{xyz[2]:.3f},1")
        for irc in rng.uniform(0.2, 0.8, (6, 3)) * np.asarray(hu.shape):
            xyz = geometry.irc2xyz(irc)
            candidates.append(f"{uid},{xyz[0]:.3f},{xyz[1]:.3f},{xyz[2]:.3f},0")
    (root / "annotations.csv").write_text("\n".join(annotations) + "\n")
    (root / "candidates.csv").write_text("\n".join(candidates) + "\n")
    return root


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    return write_scans(tmp_path_factory.mktemp("scans"))


@pytest.fixture(scope="module")
def indexed(scans):
    index = open_dataset(scans)
    config = resolve_config(find_task("unet-tiny"), {"patch": "16"})
    splits = make_splits(index, config)
    records = build_records(index, splits["train"], config, target="mask", cache=VolumeCache())
    return index, config, splits, records


def test_records_have_masks_and_nodule_centres(indexed):
    index, _, splits, records = indexed
    assert len(splits["train"]) == 3 and len(splits["val"]) == 1
    assert all(r.masks and len(r.positives) == 2 for r in records)
    check_labels(records, "mask", "unet-tiny", index.root)
    ds = PatchDataset(records, PatchGeometry((16, 16, 16), (1.0, 1.0, 1.0)))
    for scan, record in enumerate(records):
        for centre in record.positives:
            _, mask = ds.extract(scan, centre)
            assert mask[6:10, 6:10, 6:10].any()  # the nodule is in the middle of its patch


def test_region_grown_targets_where_there_are_no_masks(indexed):
    index, config, splits, _ = indexed
    grown = build_records(
        index, splits["train"], {**config, "targets": "grow"}, target="mask", cache=VolumeCache()
    )
    ds = PatchDataset(grown, PatchGeometry((16, 16, 16), (1.0, 1.0, 1.0)))
    masked = PatchDataset(indexed[3], ds.geometry)
    recall, sizes = [], []
    for scan, record in enumerate(grown):
        assert not record.masks and record.pieces
        for centre, diameter in zip(record.positives, record.diameters, strict=True):
            grown_mask, true_mask = ds.extract(scan, centre)[1], masked.extract(scan, centre)[1]
            recall.append((grown_mask & true_mask).sum() / true_mask.sum())
            sizes.append(grown_mask.sum() <= (diameter + 2) ** 3)  # within the diameter box (1 mm voxels)
    # seed 001's targets: the dense voxels of the nodule's box, so the whole nodule and a little around it
    assert np.mean(recall) > 0.9 and all(sizes)


def test_a_request_gives_the_same_patch_in_any_worker(indexed):
    _, _, _, records = indexed
    ds = PatchDataset(records, PatchGeometry((16, 16, 16), (1.0, 1.0, 1.0)), augmentation="seed000")
    sampler = PatchSampler(
        records, kind="positive", seed=3, extent=[ds.geometry.extent(r.spacing_irc) for r in records]
    )
    requests = [sampler.request(k) for k in range(8)]
    a, b = ds[requests[0]], ds[requests[0]]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    assert a["image"].shape == (1, 16, 16, 16) and a["image"].dtype == torch.float32
    unaugmented = ds[PatchRequest(**{**requests[0].__dict__, "augment": False})]
    assert not torch.equal(a["image"], unaugmented["image"])

    def batches(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=requests, num_workers=workers)
        return [torch.cat([b["image"], b["target"]]) for b in loader]

    for x, y in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x, y)


def test_training_lowers_the_loss_and_fills_the_run_folder(scans, tmp_path):
    out = tmp_path / "run"
    result = train(plan("unet-tiny", scans, out, {**TINY, "steps": 30, "val_every": 10}, device="cpu"))
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 15 and np.mean(losses[-3:]) < np.mean(losses[:3])
    vals = [r for r in read_metrics(out / "metrics.jsonl") if "val" in r]
    assert [r["step"] for r in vals] == [10, 20, 30] and set(vals[0]["val"]) == {
        "dice",
        "precision",
        "recall",
        "loss",
    }
    for name in ("config.toml", "splits.json", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file(), name
    assert read_config_file(out / "config.toml")["[run]"]["task"] == "unet-tiny"
    assert result.model == out / "model.safetensors" and result.step == 30
    info = describe(result.model)
    assert info["training"]["selected"] == "best" and info["training"]["weights_step"] == result.best["step"]
    assert info["preprocessing"]["spacing"] == [1.0, 1.0, 1.0] and info["preprocessing"]["patch"] == [
        16,
        16,
        16,
    ]
    assert load_model(result.model, "unet").model(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_resuming_from_a_checkpoint_ends_with_the_same_weights(scans, tmp_path):
    settings = {**TINY, "augmentation": "seed000", "steps": 12, "val_every": 4}
    whole = tmp_path / "whole"
    snapshot = tmp_path / "at-step-8"

    def keep_step_8(kind, info):  # what a run killed after step 8's checkpoint leaves on disk
        if kind == "step" and info["step"] == 8:
            shutil.copytree(whole, snapshot)

    train(plan("unet-tiny", scans, whole, settings), on_event=keep_step_8)
    assert load_checkpoint(snapshot / "checkpoints/last.pt")["step"] == 8
    resumed = train(plan("unet-tiny", scans, snapshot, {}, resume=True))
    assert resumed.step == 12
    a, b = load_checkpoint(whole / "checkpoints/last.pt"), load_checkpoint(snapshot / "checkpoints/last.pt")
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    x, y = load_file(whole / "model.safetensors"), load_file(snapshot / "model.safetensors")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    def lines(run):  # the log is cut back to the checkpoint and written again from there
        return [
            {k: v for k, v in r.items() if k != "patches_per_s"} for r in read_metrics(run / "metrics.jsonl")
        ]

    assert lines(whole) == lines(snapshot)


def test_a_resumed_run_must_keep_its_configuration(scans, tmp_path):
    out = tmp_path / "run"
    train(plan("unet-tiny", scans, out, {**TINY, "steps": 2}))
    with pytest.raises(LungtkError, match=r"configuration differs .*lr: 0.01 -> 0.02"):
        plan("unet-tiny", scans, out, {"lr": 0.02}, resume=True)
    with pytest.raises(LungtkError, match="already holds a run"):
        plan("unet-tiny", scans, out, {})
    with pytest.raises(LungtkError, match="does not exist"):
        plan("unet-tiny", scans, tmp_path / "new", {}, resume=True)
    plan("unet-tiny", scans, out, {"num_workers": 1}, resume=True)  # changes nothing computed


def test_early_stopping(scans, tmp_path):
    out = tmp_path / "run"
    result = train(
        plan("unet-tiny", scans, out, {**TINY, "lr": 0.0, "steps": 20, "val_every": 2, "patience": 1})
    )
    assert result.stopped == "early" and result.step == 4  # the second validation did not improve
    assert load_checkpoint(out / "checkpoints/last.pt")["done"]


def test_max_minutes_stops_validated_and_resumable(scans, tmp_path, monkeypatch):
    out = tmp_path / "run"
    clock = iter(range(0, 10**6, 30))  # every look of the loop's at the clock is 30 s later
    fake = SimpleNamespace(monotonic=lambda: float(next(clock)), perf_counter=time.perf_counter)
    monkeypatch.setattr(loop, "time", fake)  # the loop's clock alone, not every module's
    result = train(plan("unet-tiny", scans, out, {**TINY, "steps": 12, "val_every": 5, "max_minutes": 1.5}))
    assert result.stopped == "time" and 1 <= result.step < 12
    vals = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "val" in r]
    assert vals[-1] == result.step  # the weights it stopped with were validated
    assert not load_checkpoint(out / "checkpoints/last.pt")["done"] and result.model.is_file()
    monkeypatch.undo()
    resumed = train(plan("unet-tiny", scans, out, {"max_minutes": 0.0}, resume=True))
    assert resumed.step == 12 and resumed.stopped == "done"


def test_the_time_limits_validation_counts_for_no_patience(scans, tmp_path, monkeypatch):
    """A validation the time limit adds off the schedule never stops a run for good: the resumed run
    stops early where an uninterrupted one does (patience 1, no validation ever improves on the first)."""
    out = tmp_path / "run"
    monkeypatch.setattr(loop.Trainer, "validate", lambda self: {self.monitor: 0.5, "loss": 1.0})
    monkeypatch.setattr(loop.Trainer, "_past", lambda self, deadline: self.step >= 3)
    settings = {**TINY, "steps": 8, "val_every": 2, "patience": 1, "max_minutes": 60.0}
    result = train(plan("unet-tiny", scans, out, settings))
    assert result.stopped == "time" and result.step == 3
    assert not load_checkpoint(out / "checkpoints/last.pt")["done"]
    monkeypatch.setattr(loop.Trainer, "_past", lambda self, deadline: False)
    resumed = train(plan("unet-tiny", scans, out, {}, resume=True))
    assert resumed.stopped == "early" and resumed.step == 4  # as test_early_stopping's run


def test_error_region_sampling(scans, tmp_path):
    out = tmp_path / "run"
    settings = {**TINY, "sampler": "isample", "isample_every": 3, "steps": 6, "val_every": 6}
    train(plan("unet-tiny", scans, out, settings))
    maps = sorted(p.parent.name for p in (out / "isample").rglob("*.npy"))
    assert maps == ["step00000000"] * 3 + ["step00000003"] * 3  # 3 training scans, refreshed at steps 0 and 3
    grid = np.load(next((out / "isample" / "step00000003").glob("*.npy")))
    assert grid.ndim == 3 and (grid >= 0).all() and grid.max() <= 1
    assert load_checkpoint(out / "checkpoints/last.pt")["isample_step"] == 3


def test_out_of_gpu_memory_says_which_setting_to_lower(scans, tmp_path, monkeypatch):
    from lungtk.train.loop import Trainer

    def oom(self):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "_loop", oom)
    with pytest.raises(
        LungtkError, match=r"out of GPU memory .* batch_size=2, patch=16: lower --set batch_size=1 "
    ):
        train(plan("unet-tiny", scans, tmp_path / "run", {**TINY, "steps": 2}))


def test_msd_layout_trains_from_its_label_images(tmp_path):
    """MSD Task06 has label images and no centres: positives are foreground voxels (as nnU-Net samples)."""
    import json

    from lungtk.ct_io import write_image

    rng = np.random.default_rng(4)
    items = []
    for i in range(3):
        hu, labels, geometry, _ = make_scan(rng)
        write_image(tmp_path / "imagesTr" / f"lung_{i:03d}.nii.gz", hu, geometry)
        write_image(tmp_path / "labelsTr" / f"lung_{i:03d}.nii.gz", (labels > 0).astype(np.uint8), geometry)
        items.append({"image": f"./imagesTr/lung_{i:03d}.nii.gz", "label": f"./labelsTr/lung_{i:03d}.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "Lung", "training": items, "test": []}))
    the_plan = plan("unet-tiny", tmp_path, tmp_path / "run", {**TINY, "steps": 2, "val_fraction": 0.34})
    from lungtk.train.run import prepare_data

    data, index = prepare_data(the_plan, "mask")
    assert index.name == "Lung" and len(data.splits["train"]) == 2 and len(data.splits["val"]) == 1
    record = data.train.records[0]
    assert record.masks and len(record.positives) > 10 and not record.pieces
    _, mask = data.train.extract(0, record.positives[0])
    assert mask.any()
    assert train(the_plan).step == 2


class TinyCNN(torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv3d(1, width, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool3d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(width, 2),
        )

    def forward(self, x):
        return self.body(x)


def _nodule_task(scans, tmp_path, **settings):
    """A classification task as cls will define one: candidates as patches, seed 001's alternation."""
    from lungtk.core import ComponentSpec
    from lungtk.train.architectures import register_architecture
    from lungtk.train.metrics import BinaryClassificationMetric
    from lungtk.train.run import Plan, prepare_data
    from lungtk.train.task import PatchRecipe, Task

    register_architecture("tiny-cnn-test", TinyCNN)
    spec = ComponentSpec("nodule-test", "task", "x:y", settings={"sampler": "balanced", "patch": "16,24,24"})
    given = {k: v for k, v in TINY.items() if k != "width"}
    config = resolve_config(spec, {**given, "patch": "8,16,16", "steps": 6, "val_every": 3, **settings})
    task = Task(
        "nodule-test",
        "tiny-cnn-test",
        {"width": 4},
        loss=lambda output, batch: torch.nn.functional.cross_entropy(output, batch["label"]),
        metrics=BinaryClassificationMetric,
        recipe=PatchRecipe.from_config(config, target="label"),
        monitor="auc",
        config=config,
    )
    data, _ = prepare_data(Plan(spec, config, scans, tmp_path, "cpu"), "label")
    return task, data


def test_a_classification_task_needs_only_its_network_loss_and_metrics(scans, tmp_path):
    from lungtk.train.loop import Trainer

    task, data = _nodule_task(scans, tmp_path)
    labels = [data.sampler.request(k).label for k in range(6)]
    assert labels == [1, 0, 1, 0, 1, 0]
    item = data.train[data.sampler.request(0)]
    assert item["image"].shape == (1, 8, 16, 16) and item["label"] == 1 and "target" not in item
    outcome = Trainer(task, data, tmp_path / "run").fit()
    assert outcome.step == 6
    assert set(outcome.last_metrics) == {"accuracy", "precision", "recall", "f1", "auc", "loss"}


def test_self_supervised_patches_need_no_labels(scans, tmp_path):
    """``target="none"`` (Models Genesis): the images alone, from scans with or without annotations."""
    from lungtk.core import ComponentSpec
    from lungtk.train.run import Plan, prepare_data

    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(scans / "subset0", unlabelled / "subset0")
    (unlabelled / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    spec = ComponentSpec("ssl-test", "task", "x:y", settings={"pos_fraction": 0.0})
    config = resolve_config(spec, {"patch": "16", "val_patches": 2})
    data, _ = prepare_data(Plan(spec, config, unlabelled, tmp_path / "run", "cpu"), "none")
    item = data.train[data.sampler.request(0)]
    assert set(item) == {"image", "scan"} and item["image"].shape == (1, 16, 16, 16)
    assert data.val is not None and set(data.val[data.val_requests[0]]) == {"image", "scan"}
    with pytest.raises(LungtkError, match="no labels"):
        prepare_data(Plan(spec, config, unlabelled, tmp_path / "run", "cpu"), "mask")


def test_accumulated_micro_batches_make_the_same_step_as_one_batch(scans, tmp_path):
    """Two micro-batches of 1 sum to the gradient of one batch of 2 drawn from the same samples."""
    from lungtk.train.loop import Trainer

    weights = []
    for batch, accumulate in ((2, 1), (1, 2)):
        task, data = _nodule_task(
            scans, tmp_path / f"{batch}", batch_size=batch, accumulate=accumulate, val_every=100
        )
        trainer = Trainer(task, data, tmp_path / f"{batch}")
        trainer.fit()
        weights.append(trainer.model.state_dict())
    for key, value in weights[0].items():
        assert torch.allclose(value, weights[1][key], atol=1e-5), key


def test_lndb_layout_uses_every_readers_mask(tmp_path):
    from lungtk.ct_io import write_image

    rng = np.random.default_rng(5)
    rows = ["LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text"]
    for case in (1, 2, 3):
        hu, labels, geometry, nodules = make_scan(rng)
        write_image(tmp_path / "data0" / f"LNDb-{case:04d}.mhd", hu, geometry)
        for reader in (1, 2):  # reader 2 marked the first nodule only
            marked = labels if reader == 1 else (labels == 1).astype(np.uint8)
            write_image(tmp_path / "masks" / f"LNDb-{case:04d}_rad{reader}.mhd", marked, geometry)
        for k, (xyz, diameter) in enumerate(nodules, start=1):
            volume = np.pi / 6 * diameter**3
            for reader in (1, 2) if k == 1 else (1,):
                rows.append(f"{case},{reader},{k},{xyz[0]:.3f},{xyz[1]:.3f},{xyz[2]:.3f},1,{volume:.1f},5")
    (tmp_path / "trainNodules.csv").write_text("\n".join(rows) + "\n")
    the_plan = plan("unet-tiny", tmp_path, tmp_path / "run", {**TINY, "steps": 2, "val_fraction": 0.34})
    from lungtk.train.run import prepare_data

    data, index = prepare_data(the_plan, "mask")
    assert index.name == "lndb" and len(data.splits["val"]) == 1
    record = data.train.records[0]
    assert len(record.masks) == 2 and len(record.positives) == 2  # readers' marks merged into two nodules
    for centre in record.positives:  # the second nodule comes from reader 1's mask alone
        assert data.train.extract(0, centre)[1][6:10, 6:10, 6:10].any()


def test_train_only_trains_the_named_parameters_and_leaves_the_rest_as_initialised(scans, tmp_path):
    first = train(plan("unet-tiny", scans, tmp_path / "first", {**TINY, "steps": 2}))
    start = load_file(first.model)
    head = sorted(start)[-1].rsplit(".", 1)[0]  # one layer (the last in name order)
    tuned = train(
        plan(
            "unet-tiny",
            scans,
            tmp_path / "tuned",
            {**TINY, "steps": 4, "init": str(first.model), "train_only": head, "monitor": "loss"},
        )
    )
    after = load_file(tuned.model)
    changed = {k for k in start if not torch.equal(start[k], after[k])}
    assert changed and all(k.startswith(head) for k in changed)
    with pytest.raises(LungtkError, match=r"train_only='nowhere': no parameter starts with nowhere; .*parts"):
        train(plan("unet-tiny", scans, tmp_path / "bad", {**TINY, "steps": 1, "train_only": "nowhere"}))
