"""The learned classifiers' plumbing, with an oracle network in place of a trained one: the crop must be
centred on the finding at the model's spacing, whatever the scan's, and the softmax reported per task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungtk.cls.learned import CropClassifier, nodule_cnn
from lungtk.core import Candidate, Finding, Geometry, LungtkError, RunOptions
from lungtk.ct_io import CTVolume
from lungtk.train.inputs import InputSpec
from lungtk.train.modelfile import save_model


class CentreIsBright(torch.nn.Module):
    """Logits (0, 20 * (mean of the central 4^3 voxels - 0.5)): 'nodule' when the crop's centre is dense."""

    def forward(self, x):
        c = [s // 2 for s in x.shape[2:]]
        centre = x[:, 0, c[0] - 2 : c[0] + 2, c[1] - 2 : c[1] + 2, c[2] - 2 : c[2] + 2].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(centre), 20 * (centre - 0.5)], dim=1)


def _scan():
    geometry = Geometry((-30.0, 20.0, -100.0), (0.7, 0.7, 2.0))
    array = np.full((30, 80, 80), -900, np.int16)
    array[13:17, 35:45, 35:45] = 100  # a 7 x 7 x 8 mm dense block
    return CTVolume(array, geometry, "s"), geometry.irc2xyz([15, 40, 40])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_crop_classifier_centres_its_crop_on_each_finding(batch_size):
    ct, inside = _scan()
    outside = inside + np.array([15.0, 0.0, 0.0])
    classifier = CropClassifier(
        CentreIsBright(),
        InputSpec((16, 16, 16), (1.0, 1.0, 1.0), "-1000,400"),
        "nodule",
        batch_size=batch_size,
    )
    findings = [Finding(Candidate(tuple(p), 6.0, 0.5)) for p in (inside, outside, inside)]
    labels = classifier.classify(ct, findings)
    assert [set(lab) for lab in labels] == [{"nodule"}] * 3
    p = [lab["nodule"]["nodule"] for lab in labels]
    assert p[0] > 0.99 and p[1] < 0.01 and p[2] == pytest.approx(p[0])
    assert all(sum(lab["nodule"].values()) == pytest.approx(1.0) for lab in labels)
    assert classifier.classify(ct, []) == []


def test_a_model_file_of_another_task_is_refused(tmp_path):
    from lungtk.cls.networks import LunaModel

    path = save_model(
        tmp_path / "texture.safetensors",
        LunaModel(width=2, patch=(16, 16, 16), classes=3),
        architecture="luna-model",
        arch_args={"width": 2, "patch": [16, 16, 16], "classes": 3},
        preprocessing={"spacing": [1, 1, 1], "patch": [16, 16, 16], "window": "luna", "labels": "texture"},
    )
    with pytest.raises(LungtkError, match="a texture classifier; classifier 'nodule-cnn' gives nodule"):
        nodule_cnn(RunOptions("cpu", "fp32", 4, path, {}))
    with pytest.raises(LungtkError, match="--weights nodule-cnn=FILE"):
        nodule_cnn(RunOptions("cpu", "fp32", 4, None, {}))


class CascadeLike(CentreIsBright):
    """Class logits plus a mask, as seed 004's cascade answers."""

    def forward(self, x):
        return super().forward(x), torch.zeros_like(x)


def test_a_cascade_s_class_logits_are_used_and_solid_findings_skipped():
    ct, inside = _scan()
    classifier = CropClassifier(
        CascadeLike(),
        InputSpec((16, 16, 16), (1.0, 1.0, 1.0), "-1000,400"),
        "nodule",
        textures=("ground-glass",),
    )
    ggo = Finding(Candidate(tuple(inside), 6.0, 0.5), labels={"texture": {"ground-glass": 0.8, "solid": 0.2}})
    solid = Finding(
        Candidate(tuple(inside), 6.0, 0.5), labels={"texture": {"ground-glass": 0.1, "solid": 0.9}}
    )
    unknown = Finding(Candidate(tuple(inside), 6.0, 0.5))
    out = classifier.classify(ct, [ggo, solid, unknown])
    assert out[0]["nodule"]["nodule"] > 0.99 and out[1] == {} and out[2]["nodule"]["nodule"] > 0.99
