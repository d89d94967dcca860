"""What a model file's network takes as input (patch size, voxel spacing, HU window, as its training
recorded them) and cubes cut from a scan to match, for the components that run a trained network on
each candidate (segmenters and classifiers alike)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Geometry, LungtkError
from lungtk.core.labels import AIR_HU
from lungtk.ct_io.preprocess import normalize
from lungtk.ct_io.regrid import cube_geometry, resample_onto


def _three(value: Any, what: str, path: Any) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, int | float) else list(value or [])
    if len(values) != 3 or not all(isinstance(v, int | float) and v > 0 for v in values):
        raise LungtkError(
            f"{path}: its preprocessing gives no valid {what} ({value!r}); retrain or re-export it"
        )
    return tuple(float(v) for v in values)  # type: ignore[return-value]


@dataclass(frozen=True)
class InputSpec:
    """A network's input cube: ``patch_irc`` voxels at ``spacing_xyz`` mm (None: each scan's own)."""

    patch_irc: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float] | None
    window: str

    @classmethod
    def from_preprocessing(cls, pre: Mapping[str, Any], path: str | Path) -> InputSpec:
        native = pre.get("spacing") == "native"
        spacing = None if native else _three(pre.get("spacing"), "spacing", path)
        patch = tuple(int(p) for p in _three(pre.get("patch"), "patch size", path))
        return cls(patch, spacing, str(pre.get("window", "unit")))  # type: ignore[arg-type]

    def spacing_for(self, scan: Geometry) -> NDArray[np.float64]:
        """The voxel size (x, y, z mm) of this input's cubes from ``scan``: the model's, or the scan's own."""
        return np.asarray(scan.spacing if self.spacing_xyz is None else self.spacing_xyz, dtype=np.float64)

    def cubes(self, scan: Geometry, centres_xyz: Sequence[Sequence[float]]) -> list[Geometry]:
        """Each centre's input cube, its axes along the scan's."""
        return [cube_geometry(c, self.patch_irc, self.spacing_for(scan), scan) for c in centres_xyz]

    def sample(
        self, array: NDArray[np.generic], scan: Geometry, cubes: Sequence[Geometry]
    ) -> NDArray[np.float32]:
        """(N, 1, *patch) network inputs: each cube resampled from the scan (linear; air outside it) and
        windowed as in training."""
        if not cubes:
            return np.zeros((0, 1, *self.patch_irc), np.float32)
        return np.stack(
            [
                normalize(resample_onto(array, scan, cube, self.patch_irc, order=1, fill=AIR_HU), self.window)
                for cube in cubes
            ]
        )[:, None].astype(np.float32, copy=False)


_AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}


def run_network(
    model: Any, batch: NDArray[np.float32] | Any, device: str = "cpu", precision: str = "fp32"
) -> Any:
    """The network's output on ``batch`` without gradients, in float32 on the CPU (each tensor of a tuple
    output); on CUDA from pinned memory, under autocast when ``precision`` is bf16 or fp16."""
    import torch

    x = torch.as_tensor(batch)
    if device.startswith("cuda"):
        x = x.pin_memory()  # page-locked: the copy below runs asynchronously
    name = _AUTOCAST.get(precision) if device.startswith("cuda") else None
    dtype = getattr(torch, name) if name else None
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        out = model(x.to(device, non_blocking=True))
    if isinstance(out, tuple | list):
        return tuple(o.float().cpu() for o in out)
    return out.float().cpu()
