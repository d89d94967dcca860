"""Each classification task builds from its registered settings (with tiny overrides); its network, loss
and metric fit a batch as the training loop feeds them; fine-tuning freezes what it says."""

from __future__ import annotations

import pytest
import torch

from lungtk.core import LungtkError
from lungtk.train.config import resolve_config
from lungtk.train.task import create_task, find_task

TINY = {"width": "2", "patch": "16"}


def _task(name, **extra):
    spec = find_task(name)
    return create_task(spec, resolve_config(spec, {**TINY, **extra}))


@pytest.mark.parametrize(
    ("name", "classes", "monitor"),
    [("nodule-cnn", 2, "auc"), ("malignancy-cnn", 2, "auc"), ("texture-cnn", 3, "f1")],
)
def test_task_forward_loss_backward_and_metric(name, classes, monitor):
    task = _task(name)
    assert task.recipe.target == "label" and task.arch_args["classes"] == classes
    assert task.preprocessing()["labels"] == {"nodule-cnn": "nodule", "malignancy-cnn": "malignancy"}.get(
        name, "texture"
    )
    model = task.build_model()
    torch.manual_seed(0)
    batch = {"image": torch.randn(4, 1, 16, 16, 16), "label": torch.tensor([0, 1, classes - 1, -1])}
    output = task.forward(model, batch)
    assert output.shape == (4, classes)
    loss = task.loss(output, batch)
    expected = torch.nn.functional.cross_entropy(output[:3], batch["label"][:3])  # -1: no label
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()
    metric = task.metrics()
    metric.update(output.detach(), batch)
    assert monitor in metric.compute()


def test_trainable_two_leaves_only_block_four_and_the_head_learning():
    model = _task("malignancy-cnn", trainable="2").build_model()
    learning = {
        name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("features") else "")
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    assert learning == {"features.6", "head"}  # block 4 (its convolutions), the linear head
    assert all(p.requires_grad for p in _task("malignancy-cnn").build_model().parameters())


def test_bad_settings_are_one_line_errors():
    with pytest.raises(LungtkError, match="multiple of 16"):
        _task("nodule-cnn", patch="24")
    with pytest.raises(LungtkError, match="trainable"):
        _task("nodule-cnn", trainable="9")
    with pytest.raises(LungtkError, match="labels"):
        _task("nodule-cnn", labels="colour")


GGN_TINY = {"widths": "2,2,4,4", "hidden": "8", "seg_widths": "4,4,8,8", "patch": "16"}


def _ggn(**extra):
    spec = find_task("ggn-pathology")
    return create_task(spec, resolve_config(spec, {**GGN_TINY, **extra}))


def _ggn_batch():
    torch.manual_seed(0)
    target = torch.zeros(4, 1, 16, 16, 16)
    target[:, :, 5:11, 5:11, 5:11] = 1
    return {"image": torch.randn(4, 1, 16, 16, 16), "target": target, "label": torch.tensor([0, 1, 2, -1])}


def test_frozen_cascade_starts_its_segmenter_from_a_file_and_keeps_it(tmp_path):
    from lungtk.train.architectures import build_architecture
    from lungtk.train.modelfile import save_model

    seg = build_architecture("dilated-unet", {"widths": [4, 4, 8, 8]})
    path = save_model(
        tmp_path / "seg.safetensors", seg, architecture="dilated-unet", arch_args={"widths": [4, 4, 8, 8]}
    )
    task = _ggn(seg_model=str(path))
    model = task.build_model()
    task.init_model(model)
    for name, tensor in seg.state_dict().items():
        assert torch.equal(model.segmenter.state_dict()[name], tensor)
    model.train()
    assert not model.segmenter.training and model.classifier.training  # frozen BatchNorm statistics
    assert not any(p.requires_grad for p in model.segmenter.parameters())
    batch = _ggn_batch()
    logits, seg_logits = task.forward(model, batch)
    loss = task.loss((logits, seg_logits), batch)
    expected = torch.nn.functional.cross_entropy(logits[:3], batch["label"][:3])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)  # frozen: L_cls only


def test_joint_cascade_adds_lambda_times_the_segmentation_loss():
    from lungtk.nn_blocks.losses import negative_squared_dice

    task = _ggn(joint="true", lambda_seg="0.5")
    model = task.build_model()
    assert all(p.requires_grad for p in model.parameters())
    batch = _ggn_batch()
    logits, seg_logits = task.forward(model, batch)
    ce = torch.nn.functional.cross_entropy(logits[:3], batch["label"][:3])
    expected = ce + 0.5 * negative_squared_dice(seg_logits, batch["target"])
    assert float(task.loss((logits, seg_logits), batch).detach()) == pytest.approx(
        float(expected.detach()), rel=1e-5
    )


@pytest.mark.parametrize(
    ("grouping", "labels"), [(2, [0, 1, 1, -1]), (3, [0, 0, 1, -1]), (4, [0, 1, -1, -1])]
)
def test_seed004_task_groupings(grouping, labels):
    task = _ggn(mask="none", grouping=str(grouping))
    assert task.architecture == "ggn-cnn" and task.arch_args["classes"] == 2
    batch = _ggn_batch()
    logits = task.forward(task.build_model(), batch)
    keep = torch.tensor(labels) >= 0
    expected = torch.nn.functional.cross_entropy(logits[keep], torch.tensor(labels)[keep])
    assert float(task.loss(logits, batch).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    metric = task.metrics()
    metric.update(logits.detach(), batch)
    assert "auc" in metric.compute()


def test_ground_truth_mask_variant_masks_the_input():
    task = _ggn(mask="truth")
    batch = _ggn_batch()
    seen = []
    task.forward(lambda x: seen.append(x), batch)
    assert torch.equal(seen[0], batch["image"] * batch["target"])


def test_ggn_bad_settings():
    with pytest.raises(LungtkError, match="needs a trained segmenter"):
        _ggn()
    with pytest.raises(LungtkError, match="grouping"):
        _ggn(mask="none", grouping="7")
    with pytest.raises(LungtkError, match="mask"):
        _ggn(mask="hard")


def test_forest_on_encoder_features_separates_what_the_features_separate():
    from lungtk.cls.forest import encoder_features, forest_probabilities
    from lungtk.cls.networks import LunaModel

    torch.manual_seed(0)
    model = LunaModel(width=2, patch=(16, 16, 16)).eval()
    rng = torch.Generator().manual_seed(1)
    bright = torch.randn(20, 1, 16, 16, 16, generator=rng) + 3.0
    dark = torch.randn(20, 1, 16, 16, 16, generator=rng)
    features = encoder_features(model, torch.cat([bright, dark]).numpy())
    assert features.shape == (40, model.head.in_features)
    labels = [1] * 20 + [0] * 20
    train = list(range(0, 40, 2))
    test = list(range(1, 40, 2))
    p = forest_probabilities(features[train], [labels[i] for i in train], features[test], trees=50)
    assert p.shape == (20, 2) and ((p[:, 1] > 0.5) == [labels[i] == 1 for i in test]).all()


def test_a_batch_without_a_labelled_patch_adds_no_classification_loss():
    task = _ggn(mask="none")
    batch = {**_ggn_batch(), "label": torch.tensor([-1, -1, -1, -1])}
    logits = task.forward(task.build_model(), batch)
    loss = task.loss(logits, batch)
    assert float(loss.detach()) == 0.0
    loss.backward()  # still a graph: the engine's step works on it
