"""What components hand each other: candidates, nodule masks and findings, all in patient millimetres."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core.geometry import Geometry
from lungtk.core.labels import LUNA16_DIAMETER, LUNA16_PROBABILITY, LUNA16_XYZ


def _number(value: Any, what: str) -> float:
    """``value`` as a float; text, ``None`` and other non-numbers are a ValueError naming ``what``."""
    if isinstance(value, str | bytes) or value is None:
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None


def equivalent_diameter(volume_mm3: float) -> float:
    """Diameter (mm) of the sphere of that volume (mm³)."""
    return float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0))


@dataclass(frozen=True)
class Candidate:
    """A detected spot: centre in patient mm (x, y, z; ITK/LPS), diameter in mm, probability in [0, 1].

    ``box_mm`` is an optional axis-aligned box (x0, y0, z0, x1, y1, z1) in patient mm.
    """

    center_xyz: tuple[float, float, float]
    diameter_mm: float
    probability: float
    box_mm: tuple[float, float, float, float, float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        try:
            center = tuple(_number(v, "center_xyz") for v in self.center_xyz)
        except TypeError:
            raise ValueError(f"center_xyz must be 3 finite numbers, got {self.center_xyz!r}") from None
        if len(center) != 3 or not all(np.isfinite(center)):
            raise ValueError(f"center_xyz must be 3 finite numbers, got {self.center_xyz!r}")
        object.__setattr__(self, "center_xyz", center)
        diameter = _number(self.diameter_mm, "diameter_mm")
        if not (diameter >= 0 and np.isfinite(diameter)):
            raise ValueError(f"diameter_mm must be finite and >= 0, got {self.diameter_mm!r}")
        probability = _number(self.probability, "probability")
        if not (0.0 <= probability <= 1.0):
            raise ValueError(f"probability must be in [0, 1], got {self.probability!r}")
        object.__setattr__(self, "diameter_mm", diameter)
        object.__setattr__(self, "probability", probability)
        if self.box_mm is not None:
            try:
                box = tuple(_number(v, "box_mm") for v in self.box_mm)
            except TypeError:
                box = ()
            if len(box) != 6 or not all(np.isfinite(box)) or any(box[k] > box[k + 3] for k in range(3)):
                raise ValueError(
                    f"box_mm must be 6 finite numbers x0, y0, z0 <= x1, y1, z1, got {self.box_mm!r}"
                )
            object.__setattr__(self, "box_mm", box)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dict(zip(LUNA16_XYZ, self.center_xyz, strict=True)),
            LUNA16_DIAMETER: self.diameter_mm,
            LUNA16_PROBABILITY: self.probability,
            "box_mm": list(self.box_mm) if self.box_mm is not None else None,
            "source": self.source,
        }


@dataclass(frozen=True, eq=False)
class NoduleMask:
    """A binary mask crop with its own geometry, so it can be pasted back into the scan.

    ``texture`` optionally holds probabilities for ``ground-glass``, ``part-solid`` and ``solid``;
    ``uncertainty`` optionally a per-voxel map of the segmenter's doubt on the mask's grid (the entropy of the
    test-time augmented probability, in nats: 0 sure, ln 2 a coin toss).
    """

    mask: NDArray[np.bool_]
    geometry: Geometry
    texture: dict[str, float] | None = None
    uncertainty: NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        given = np.asarray(self.mask)
        if given.ndim != 3:
            raise ValueError(f"a nodule mask must be 3D (index, row, col), got shape {given.shape}")
        # 0/1 of any number type is a mask; NaN, probabilities or labels are not (cast, they would all
        # silently become "inside").
        if given.dtype != np.bool_ and (
            given.dtype.kind not in "iuf" or (given.size and not np.isin(given, (0, 1)).all())
        ):
            raise ValueError(
                f"a nodule mask must hold booleans or 0/1, got {given.dtype} values other than 0 and 1 "
                "(threshold a probability map first)"
            )
        if not isinstance(self.geometry, Geometry):
            raise ValueError(
                f"a nodule mask's geometry must be a Geometry, got {type(self.geometry).__name__}"
            )
        object.__setattr__(self, "mask", given.astype(bool, copy=False))
        if self.uncertainty is not None:
            doubt = np.asarray(self.uncertainty, dtype=np.float32)
            if doubt.shape != given.shape:
                problem = f"shape {doubt.shape}"
            elif not np.isfinite(doubt).all():
                problem = "NaN or infinite values"
            elif (doubt < 0).any():
                problem = "negative values"
            else:
                problem = ""
            if problem:
                raise ValueError(
                    f"a nodule mask's uncertainty must be a finite, non-negative map of the mask's shape "
                    f"{given.shape}, got {problem}"
                )
            object.__setattr__(self, "uncertainty", doubt)

    @property
    def volume_mm3(self) -> float:
        return float(self.mask.sum()) * self.geometry.voxel_volume

    def start_in(self, scan: Geometry) -> NDArray[np.int64]:
        """The scan voxel (index, row, col) where this crop's first voxel lies (for pasting it back)."""
        return np.round(scan.xyz2irc(self.geometry.origin, continuous=True)).astype(np.int64)

    @property
    def equivalent_diameter_mm(self) -> float:
        """Diameter of the sphere with the mask's volume."""
        return equivalent_diameter(self.volume_mm3)

    @property
    def centroid_xyz(self) -> tuple[float, float, float] | None:
        idx = np.argwhere(self.mask)
        if idx.size == 0:
            return None
        x, y, z = self.geometry.irc2xyz(idx.mean(axis=0))
        return (float(x), float(y), float(z))


@dataclass(frozen=True, eq=False)
class Finding:
    """A candidate with what later stages learnt about it: a mask and labels (name -> probability
    distribution, e.g. ``{"malignancy": {"benign": 0.2, "malignant": 0.8}}``)."""

    candidate: Candidate
    mask: NoduleMask | None = None
    labels: dict[str, dict[str, float]] = field(default_factory=dict)

    def with_mask(self, mask: NoduleMask | None) -> Finding:
        return replace(self, mask=mask)

    def with_labels(self, labels: dict[str, dict[str, float]]) -> Finding:
        return replace(self, labels={**self.labels, **labels})

    @property
    def volume_mm3(self) -> float | None:
        return self.mask.volume_mm3 if self.mask is not None else None
