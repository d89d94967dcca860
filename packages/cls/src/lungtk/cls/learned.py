"""Learned classifiers as pipeline components: the network's input cube around each finding (its patch
at its spacing, windowed as in training), one forward pass for a batch of findings, and the softmax as
``{task: {label: probability}}``. The task is the one the model file was trained for (its
``preprocessing.labels``: nodule, malignancy, texture or pathology)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lungtk.core import Finding, LungtkError, RunOptions, Volume
from lungtk.core.errors import missing_model_file
from lungtk.core.labels import GROUND_GLASS, PART_SOLID, PATHOLOGY, TASK_LABELS, TEXTURE
from lungtk.train.inputs import InputSpec, run_network
from lungtk.train.modelfile import load_model


@dataclass
class CropClassifier:
    """A network that classifies a cube around each finding (``Classifier`` protocol)."""

    model: torch.nn.Module
    inputs: InputSpec
    task: str
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 32
    textures: tuple[str, ...] | None = None
    """Classify only findings whose texture (as an earlier stage gave it) is one of these; None: all."""

    @classmethod
    def load(
        cls,
        options: RunOptions,
        name: str,
        architecture: str | tuple[str, ...],
        task: str,
        textures: tuple[str, ...] | None = None,
    ) -> CropClassifier:
        if options.weights is None:
            raise missing_model_file(f"classifier '{name}'", name)
        loaded = load_model(options.weights, architecture, device=options.device, who=f"classifier '{name}'")
        trained_for = loaded.header.labels or "no"
        if trained_for != task:
            raise LungtkError(
                f"{options.weights}: a {trained_for} classifier; classifier '{name}' gives {task}: "
                f"pass a model file trained with labels={task}"
            )
        classes = int(loaded.header.arch_args.get("classes", 2))
        if classes != len(TASK_LABELS[task]):
            raise LungtkError(
                f"{options.weights}: {classes} outputs, but {task} has {len(TASK_LABELS[task])} labels"
            )
        return cls(
            loaded.model, loaded.input_spec(), task, options.device, options.precision, options.batch_size
        )

    def probabilities(self, ct: Volume, centres_xyz: Sequence[Sequence[float]]) -> np.ndarray:
        """(N, classes) softmax of the network at each centre (patient mm)."""
        scan = ct.geometry
        array = np.asarray(ct.array)
        out = []
        for start in range(0, len(centres_xyz), max(1, self.batch_size)):
            cubes = self.inputs.cubes(scan, centres_xyz[start : start + self.batch_size])
            logits = run_network(
                self.model, self.inputs.sample(array, scan, cubes), self.device, self.precision
            )
            logits = logits[0] if isinstance(logits, tuple) else logits  # a cascade also gives its mask
            out.append(torch.softmax(logits, dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(TASK_LABELS[self.task])))

    def classify(self, ct: Volume, findings: Sequence[Finding]) -> list[dict[str, dict[str, float]]]:
        wanted = [i for i, f in enumerate(findings) if self._applies(f)]
        probs = self.probabilities(ct, [findings[i].candidate.center_xyz for i in wanted])
        labels = TASK_LABELS[self.task]
        out: list[dict[str, dict[str, float]]] = [{} for _ in findings]
        for i, row in zip(wanted, probs, strict=True):
            out[i] = {self.task: {label: float(p) for label, p in zip(labels, row, strict=True)}}
        return out

    def _applies(self, finding: Finding) -> bool:
        if self.textures is None:
            return True
        texture = finding.labels.get(TEXTURE)  # a segmenter's texture is there too (the pipeline puts it)
        return not texture or max(texture, key=texture.__getitem__) in self.textures


def nodule_cnn(options: RunOptions) -> CropClassifier:
    return CropClassifier.load(options, "nodule-cnn", "luna-model", "nodule")


def malignancy_cnn(options: RunOptions) -> CropClassifier:
    return CropClassifier.load(options, "malignancy-cnn", "luna-model", "malignancy")


def texture_cnn(options: RunOptions) -> CropClassifier:
    return CropClassifier.load(options, "texture-cnn", "luna-model", "texture")


def ggn_pathology(options: RunOptions) -> CropClassifier:
    """Seed 004's cascade on ground-glass and part-solid findings (solid ones get no pathology); a finding
    without a texture from an earlier stage is classified too."""
    return CropClassifier.load(
        options, "ggn-pathology", ("ggn-cascade", "ggn-cnn"), PATHOLOGY, (GROUND_GLASS, PART_SOLID)
    )
