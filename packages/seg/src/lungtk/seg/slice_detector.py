"""Seed 001's segmentation-based detector: the 2.5D U-Net over every axial slice of the whole scan, then
the grouping of its probability into candidates (threshold, erosion, components, HU-weighted centres).

The scan is first resampled to the model's spacing (what it was trained at), so a slab of 7 slices covers
the same millimetres whatever the scan's slice thickness. Slices go through the network in batches; the
probability volume (float32, the size of the resampled scan) is the only whole-scan buffer besides the
scan itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from lungtk.core import Candidate, LungtkError, RunOptions, Volume
from lungtk.core.errors import missing_model_file
from lungtk.ct_io.preprocess import normalize, resample
from lungtk.ct_io.volume import CTVolume
from lungtk.seg.grouping import GroupingRule, group_candidates
from lungtk.train.modelfile import load_model

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def slab_indices(z: NDArray[np.int64], slices: int, depth: int) -> NDArray[np.int64]:
    """For each centre slice, the indices of its ``slices`` neighbours, clamped at the volume's ends."""
    offsets = np.arange(slices) - slices // 2
    return np.clip(z[:, None] + offsets[None, :], 0, depth - 1)


@dataclass
class SliceDetector:
    """A 2.5D network run slice by slice (``Detector`` protocol)."""

    model: torch.nn.Module
    spacing_xyz: tuple[float, float, float]
    slices: int
    window: str
    rule: GroupingRule = field(default_factory=GroupingRule)
    max_candidates: int = 100
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 16
    source: str = "unet25d"

    @classmethod
    def load(cls, options: RunOptions, architecture: str = "unet25d") -> SliceDetector:
        if options.weights is None:
            raise missing_model_file(f"detector '{architecture}'", architecture)
        settings = options.settings
        rule = GroupingRule(
            float(settings["threshold"]),
            int(settings["erosion"]),
            int(settings["connectivity"]),
            score=str(settings["score"]),
        )
        if int(settings["max_candidates"]) < 1:
            raise LungtkError(f"setting {architecture}.max_candidates: use 1 or more")
        loaded = load_model(
            options.weights, architecture, device=options.device, who=f"detector '{architecture}'"
        )
        pre = loaded.preprocessing
        spacing = pre.get("spacing")
        if not (isinstance(spacing, list) and len(spacing) == 3 and all(float(s) > 0 for s in spacing)):
            raise LungtkError(
                f"{options.weights}: its preprocessing gives no valid spacing; retrain or re-export it"
            )
        return cls(
            loaded.model,
            tuple(float(s) for s in spacing),  # type: ignore[arg-type]
            int(getattr(loaded.model, "slices", 7)),
            str(pre.get("window", "luna")),
            rule,
            int(settings["max_candidates"]),
            options.device,
            options.precision,
            options.batch_size,
            architecture,
        )

    def probability(self, hu: NDArray[np.floating]) -> NDArray[np.float32]:
        """The network's probability for every voxel of ``hu`` (index, row, col) at the model's spacing."""
        depth, rows, cols = hu.shape
        divisor = int(getattr(self.model, "divisor", 1))
        pad_r, pad_c = (-rows) % divisor, (-cols) % divisor
        out = np.empty(hu.shape, dtype=np.float32)
        dtype = _AUTOCAST.get(self.precision) if self.device.startswith("cuda") else None
        for start in range(0, depth, self.batch_size):
            z = np.arange(start, min(start + self.batch_size, depth))
            slab = normalize(hu[slab_indices(z, self.slices, depth)], self.window)  # (B, slices, R, C)
            x = torch.from_numpy(np.pad(slab, ((0, 0), (0, 0), (0, pad_r), (0, pad_c)), mode="edge"))
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                logits = self.model(x.to(self.device, non_blocking=True))
            out[z] = torch.sigmoid(logits.float())[:, 0, :rows, :cols].cpu().numpy()
        return out

    def detect(self, ct: Volume) -> list[Candidate]:
        volume = (
            ct if isinstance(ct, CTVolume) else CTVolume(np.asarray(ct.array), ct.geometry, ct.series_uid)
        )
        at_model = resample(volume, self.spacing_xyz)
        hu = np.asarray(at_model.array, dtype=np.float32)
        found = group_candidates(self.probability(hu), hu, at_model.geometry, self.rule, source=self.source)
        return found[: self.max_candidates]


def unet25d(options: RunOptions) -> SliceDetector:
    return SliceDetector.load(options, "unet25d")
