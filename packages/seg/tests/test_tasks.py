"""Each seed segmentation task builds from its registered settings (with tiny overrides) and its network,
loss and metric fit a batch as the training loop feeds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungtk.core import LungtkError
from lungtk.train.config import resolve_config
from lungtk.train.task import create_task, find_task

TINY = {
    "resunet": {"width": "4", "levels": "3", "patch": "16"},
    "unet25d": {"width": "4", "patch": "7,16,16"},
    "unet3d-res": {"channels": "4,8,16", "patch": "16"},
    "dilated-unet": {"widths": "4,4,8,8", "patch": "16"},
}


def _task(name, **extra):
    spec = find_task(name)
    return create_task(spec, resolve_config(spec, {**TINY[name], **extra}))


def _batch(task, n=2):
    torch.manual_seed(0)
    size = task.recipe.size
    target = torch.zeros(n, 1, *size)
    target[:, :, size[0] // 2 - 1 : size[0] // 2 + 2, 5:11, 5:11] = 1.0
    return {"image": torch.randn(n, 1, *size), "target": target, "label": torch.tensor([2, -1])}


@pytest.mark.parametrize("name", sorted(TINY))
def test_task_forward_loss_backward_and_metric(name):
    task = _task(name)
    model = task.build_model()
    batch = _batch(task)
    output = task.forward(model, batch)
    loss = task.loss(output, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    metric = task.metrics()
    metric.update(output, batch)
    assert set(metric.compute()) >= {task.monitor}
    assert task.preprocessing()["patch"] == list(task.recipe.size)


def test_resunet_ce_switches_on_at_the_iou_gate_and_uses_only_rated_patches():
    task = _task("resunet", ce_from_iou="0.45")
    model = task.build_model().eval()
    batch = _batch(task)
    with torch.no_grad():
        output = model(batch["image"])
    before = float(task.loss(output, batch))
    task.on_validation({"dice": 0.6})  # IoU 0.43: still off
    assert float(task.loss(output, batch)) == before
    task.on_validation({"dice": 0.63})  # IoU 0.46: on for good
    after = float(task.loss(output, batch))
    ce = torch.nn.functional.cross_entropy(output[1][:1], batch["label"][:1])  # one rated patch: weight 1
    assert after == pytest.approx(before + 0.5 * 0.2 * float(ce), rel=1e-5)
    assert bool(task.loss.state_dict()["ce_on"])  # a checkpoint keeps the switch


def test_bad_task_settings_are_one_line_errors():
    with pytest.raises(LungtkError, match="divisible by 4"):
        _task("resunet", patch="18")
    with pytest.raises(LungtkError, match="odd number of slices"):
        _task("unet25d", patch="6,16,16")
    with pytest.raises(LungtkError, match="give 4 widths"):
        _task("dilated-unet", widths="4,8")
    with pytest.raises(LungtkError, match="texture_pool='nodule': use bottleneck or mask"):
        _task("resunet", texture_pool="nodule")


def test_resunet_texture_pool_mask_reads_its_own_segmentation_of_the_target_in_training():
    task = _task("resunet", texture_pool="mask")
    model = task.build_model().eval()
    batch = _batch(task)  # target: a 3 x 6 x 6 block in both samples
    logits = torch.full((2, 1, 16, 16, 16), -5.0)
    logits[0, :, 7:9, 3:8, 3:8] = 5.0  # sample 0: overlaps the target, reaching 2 voxels past it ...
    logits[0, :, 7:9, 13:16, 13:16] = 5.0  # ... and something far from it
    model.unet.decode = lambda bottleneck, skips: logits  # sample 1 segments nothing
    with torch.no_grad():
        seg, texture = task.forward(model, batch)
        target = batch["target"][:, 0].numpy() > 0
        near = np.stack([ndimage.binary_dilation(t, np.ones((5, 5, 5))) for t in target])
        own = (torch.sigmoid(seg)[:, 0].numpy() >= 0.5) & near
        assert own[0].any() and not own[1].any() and own[0].sum() < (logits[0] > 0).sum()
        expected = torch.from_numpy(np.stack([own[0], target[1]]))[:, None].float()
        torch.testing.assert_close(texture, model.texture_logits(batch["image"], expected))
        _, plain = model(batch["image"])  # no mask, no target: under the network's own probability
        torch.testing.assert_close(plain, model.texture_logits(batch["image"], torch.sigmoid(seg)))
    metric = task.metrics()
    metric.update((seg, texture), batch)
    assert {"dice", "head_accuracy", "head_mcc"} <= set(metric.compute())


def test_resunet_bce_weight_adds_a_voxel_bce():
    plain, with_bce = _task("resunet"), _task("resunet", bce_weight="0.5")
    model = plain.build_model().eval()
    batch = _batch(plain)
    with torch.no_grad():
        output = model(batch["image"])
        bce = torch.nn.functional.binary_cross_entropy_with_logits(output[0], batch["target"])
        assert float(with_bce.loss(output, batch)) == pytest.approx(
            float(plain.loss(output, batch)) + 0.5 * 0.5 * float(bce), rel=1e-5
        )
