"""NoduleNet at a tiny width: the heads' shapes, every attention variant, inference, the staged training
objective (a few SGD steps lower the loss on one synthetic batch), the validation metric, the task's
settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungtk.core import LungtkError
from lungtk.detect.losses import rpn_loss
from lungtk.detect.metrics import DetectionMetric
from lungtk.detect.nodulenet import Detections, NoduleNet
from lungtk.train.config import resolve_config
from lungtk.train.task import create_task, find_task

TINY = {"width": "0.125", "patch": "32", "batch_size": "2", "steps": "10"}


def _task(name="nodulenet", **extra):
    spec = find_task(name)
    return create_task(spec, resolve_config(spec, {**TINY, **extra}))


def _batch():
    torch.manual_seed(0)
    image = torch.rand(2, 1, 32, 32, 32) * 60 + 20  # lung-like values of the 0-255 window
    target = torch.zeros(2, 1, 32, 32, 32)
    zz, yy, xx = torch.meshgrid(*(torch.arange(32),) * 3, indexing="ij")
    ball = ((zz - 12) ** 2 + (yy - 14) ** 2 + (xx - 17) ** 2) <= 16
    target[0, 0][ball] = 1
    image[0, 0][ball] = 200.0
    return {"image": image, "target": target}


@pytest.mark.parametrize("attention", ["none", "cbam", "qam"])
def test_heads_and_inference_at_tiny_width(attention):
    model = NoduleNet(width=0.125, attention=attention)
    x = torch.rand(2, 1, 32, 32, 32) * 255
    out = model(x)
    n = 8 * 8 * 8 * 5
    assert out["rpn_logits"].shape == (2, n) and out["rpn_deltas"].shape == (2, n, 4)
    assert out["anchors"].shape == (n, 4)
    assert out["rcnn_logits"].shape == (16, 2) and out["rcnn_deltas"].shape == (16, 4)  # 8 best per patch
    assert len(out["mask_logits"]) == 2
    for w, m in zip(out["mask_windows"], out["mask_logits"], strict=True):
        assert tuple(m.shape) == tuple((w[4:] - w[1:4]).tolist())
    model.eval()
    found = model.detect(x, threshold=0.0, max_keep=4, with_masks=True)
    assert len(found) == 2 and all(isinstance(d, Detections) for d in found)
    d = found[0]
    assert d.boxes.shape == (4, 4) and bool((d.scores[:-1] >= d.scores[1:]).all())
    torch.testing.assert_close(d.scores, (d.rpn_scores + d.rcnn_scores) / 2)
    assert d.masks is not None and len(d.masks) == 4
    assert all(p.shape == tuple(np.subtract(w[3:], w[:3])) and float(p.min()) >= 0 for w, p in d.masks)
    kept = model.detect(x, threshold=0.0, max_keep=4, keep=lambda b, boxes: boxes[:, 0] < 16)
    assert all(bool((k.boxes[:, 0] < 16).all()) for k in kept)


def test_bad_inputs_and_arguments_are_one_line_errors():
    with pytest.raises(LungtkError, match="multiples of 16"):
        NoduleNet(width=0.125)(torch.zeros(1, 1, 24, 32, 32))
    with pytest.raises(LungtkError, match="use none, cbam or qam"):
        NoduleNet(width=0.125, attention="se")
    with pytest.raises(LungtkError, match="positive factor"):
        NoduleNet(width=0)


def test_the_objective_stages_the_heads_and_lowers_the_loss():
    torch.manual_seed(0)
    task = _task(rcnn_start="0.3", mask_start="0.5")  # 10 steps: RCNN from step 3, masks from step 5
    model = task.build_model()
    batch = _batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses, stages = [], []
    for _ in range(8):
        output = task.forward(model, batch)
        stages.append(("rcnn_logits" in output, "mask_logits" in output))
        loss = task.loss(output, batch)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())  # every head in the graph (DDP)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert stages == [(False, False)] * 3 + [(True, False)] * 2 + [(True, True)] * 3
    assert task.loss.stages() == (True, True) and int(task.loss.state_dict()["passes"]) == 8
    first = _task(rcnn_start="0", mask_start="0")
    assert first.loss.stages() == (True, True)
    # RPN only: the same batch and the same random draws before and after a few steps
    model = task.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rpn = _task(rcnn_start="1", mask_start="1")

    def measured() -> float:  # the RPN's classification loss, with the same negatives drawn
        with torch.no_grad():
            out = rpn.forward(model, batch)
            generator = torch.Generator().manual_seed(123)
            return float(
                rpn_loss(
                    out["rpn_logits"], out["rpn_deltas"], out["anchors"], out["truth"], generator=generator
                )[0]
            )

    before = measured()
    for _ in range(10):
        loss = rpn.loss(rpn.forward(model, batch), batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)  # the engine's default clipping
        optimizer.step()
    assert measured() < 0.5 * before  # 2.21 -> 0.31 here


def test_validation_runs_inference_for_the_patch_froc():
    task = _task(rcnn_start="0", mask_start="0", rpn_threshold="0.0")
    model = task.build_model().eval()
    batch = _batch()
    with torch.no_grad():
        output = task.forward(model, batch)
        loss = task.loss(output, batch)
    assert torch.isfinite(loss) and int(task.loss.state_dict()["passes"]) == 0  # validation is not counted
    metric = task.metrics()
    metric.update(output, batch)
    values = metric.compute()
    assert set(values) == {"cpm", "recall", "precision"} and all(0 <= v <= 1 for v in values.values())


def test_detection_metric_on_hand_cases():
    truth = [torch.tensor([[10.0, 10, 10, 8]]), torch.zeros(0, 4)]
    hit = Detections(
        torch.tensor([[11.0, 10, 10, 8], [11.0, 11, 10, 8]]), torch.tensor([0.9, 0.3]), *(torch.zeros(2),) * 2
    )
    miss = Detections(torch.tensor([[20.0, 20, 20, 8]]), torch.tensor([0.6]), torch.zeros(1), torch.zeros(1))
    metric = DetectionMetric()
    metric.update({"detections": [hit, miss], "truth": truth}, {})
    values = metric.compute()
    # one nodule, found at 0.9; one false positive (0.6) over two patches: 0.5 FP per patch
    assert values["recall"] == 1.0 and values["cpm"] == 1.0
    assert values["precision"] == pytest.approx(0.5)  # of the marks >= 0.5: the hit (0.9) and the miss
    late = DetectionMetric()
    late.update(
        {
            "detections": [Detections(hit.boxes, torch.tensor([0.2, 0.1]), *(torch.zeros(2),) * 2), miss],
            "truth": truth,
        },
        {},
    )
    # the nodule only at 0.2, below a false positive at 0.6: found at 1/2 FP per patch and beyond
    assert late.compute()["cpm"] == pytest.approx(5 / 7)


def test_task_settings_are_checked_with_one_line_errors():
    task = _task()
    assert task.arch_args["anchors"] == [5.0, 10.0, 20.0, 30.0, 50.0] and task.arch_args["input_range"] == [
        0,
        255,
    ]
    assert task.recipe.target == "mask" and task.init_accepts == ("nodulenet", "genesis")
    assert _task(spacing="2").arch_args["anchors"] == [2.5, 5.0, 10.0, 15.0, 25.0]  # anchors in voxels
    with pytest.raises(LungtkError, match="multiple of 16"):
        _task(patch="40")
    with pytest.raises(LungtkError, match="isotropic"):
        _task(spacing="0.7,0.7,1.25")
    with pytest.raises(LungtkError, match="attention='se'"):
        _task(attention="se")
    with pytest.raises(LungtkError, match="rcnn_start=1.5"):
        _task(rcnn_start="1.5")
    with pytest.raises(LungtkError, match="anchors_mm"):
        _task(anchors_mm="5,x")
