"""Image geometry in the ITK / LPS convention and the patient-mm <-> voxel transforms.

Vectors are in ITK order: ``origin`` and ``spacing`` are (x, y, z); ``direction`` is the 3x3 matrix whose
*columns* are the directions of the image's i, j, k (column, row, slice) axes in patient space. Voxel
arrays are indexed ``[index, row, col]`` = ``[k, j, i]`` (numpy's order for a SimpleITK image), so

    xyz = origin + direction @ (spacing * (col, row, index))

``xyz2irc`` inverts that with the true inverse of the direction matrix. (The widely copied
``(xyz - origin) @ inv(direction)`` form multiplies by the transposed inverse, which is only right for a
symmetric direction matrix.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_CHUNK = 16384
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
# What a geometry may hold: far beyond any real scan, near enough that its arithmetic stays exact (an
# origin of 1e308 mm or a spacing of 1e-300 mm is a damaged header, not a scan). The same bounds as
# lungtk.core.validate's for coordinates and sizes.
MAX_ORIGIN_MM = 1e5
MIN_SPACING_MM, MAX_SPACING_MM = 1e-6, 1e4
UNIT_TOLERANCE = 1e-2  # how far a direction column's length may stray from 1 (float noise in headers)


def _vec3(value: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be 3 finite numbers (x, y, z), got {value!r}")
    return arr


def _shown(values: NDArray[np.float64]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


def _points(points: ArrayLike) -> tuple[NDArray[np.float64], bool]:
    arr = np.asarray(points, dtype=np.float64)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"points must have shape (3,) or (N, 3), got {np.shape(points)}")
    return arr, single


@dataclass(frozen=True, eq=False)
class Geometry:
    """Where a voxel grid sits in patient space (millimetres, LPS)."""

    origin: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    spacing: NDArray[np.float64] = field(default_factory=lambda: np.ones(3))
    direction: NDArray[np.float64] = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        origin = _vec3(self.origin, "origin")
        spacing = _vec3(self.spacing, "spacing")
        if np.any(spacing <= 0):
            raise ValueError(f"spacing must be positive, got {_shown(spacing)}")
        if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
            raise ValueError(
                f"spacing must be between {MIN_SPACING_MM:g} and {MAX_SPACING_MM:g} mm, got {_shown(spacing)}"
            )
        if np.any(np.abs(origin) > MAX_ORIGIN_MM):
            raise ValueError(f"origin must lie within +-{MAX_ORIGIN_MM:g} mm, got {_shown(origin)}")
        direction = np.asarray(self.direction, dtype=np.float64)
        if direction.size != 9:
            raise ValueError(f"direction must have 9 numbers (3x3, row-major), got {direction.size}")
        direction = direction.reshape(3, 3)
        if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-6:
            raise ValueError(f"direction must be an invertible 3x3 matrix, got {direction.tolist()}")
        lengths = np.linalg.norm(direction, axis=0)
        if np.any(np.abs(lengths - 1.0) > UNIT_TOLERANCE):
            raise ValueError(
                "direction must hold unit vectors (direction cosines; the voxel size belongs in the "
                f"spacing), but its columns have lengths {_shown(lengths)}"
            )
        for name, value in (("origin", origin), ("spacing", spacing), ("direction", direction)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        # Row-vector forms with the (col,row,index) <-> (index,row,col) reversal and the origin folded in:
        #   irc = xyz @ A + b,  A = (inv(D) / spacing[:, None]).T reversed,  b = -origin @ A
        #   xyz = irc @ B + origin,  B = (D * spacing).T reversed
        to_irc = (np.linalg.inv(direction) / spacing[:, None]).T[:, ::-1].copy()
        to_xyz = (direction * spacing[None, :]).T[::-1, :].copy()
        irc_offset = -origin @ to_irc
        for name, value in (("_to_irc", to_irc), ("_to_xyz", to_xyz), ("_irc_offset", irc_offset)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    # -- transforms --------------------------------------------------------------------------------------
    def xyz2irc(self, xyz: ArrayLike, *, continuous: bool = False) -> NDArray[Any]:
        """Patient mm (x, y, z) -> voxel (index, row, col); nearest voxel unless ``continuous``.

        Accepts one point (3,) or many (N, 3). Rounding matches ITK's TransformPhysicalPointToIndex
        (halves round up).
        """
        pts, single = _points(xyz)
        offset = self._irc_offset if continuous else self._irc_offset + 0.5  # type: ignore[attr-defined]
        irc = np.empty(pts.shape, dtype=np.float64 if continuous else np.int64)
        buffer = np.empty((min(len(pts), _CHUNK), 3))
        for start in range(0, len(pts), _CHUNK):  # cache-sized chunks: one pass over memory, not five
            rows = pts[start : start + _CHUNK]
            out = buffer[: len(rows)]
            np.matmul(rows, self._to_irc, out=out)  # type: ignore[attr-defined]
            out += offset
            if not continuous:
                np.floor(out, out=out)
            irc[start : start + _CHUNK] = out
        return irc[0] if single else irc

    def irc2xyz(self, irc: ArrayLike) -> NDArray[np.float64]:
        """Voxel (index, row, col), integer or continuous -> patient mm (x, y, z)."""
        pts, single = _points(irc)
        xyz = pts @ self._to_xyz  # type: ignore[attr-defined]
        xyz += self.origin
        return xyz[0] if single else xyz

    # -- conveniences ------------------------------------------------------------------------------------
    @property
    def spacing_irc(self) -> NDArray[np.float64]:
        """Spacing in array order (index, row, col)."""
        return self.spacing[::-1].copy()

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3 (direction matrices of real scans are orthonormal)."""
        return float(np.prod(self.spacing) * abs(np.linalg.det(self.direction)))

    @property
    def is_axis_aligned(self) -> bool:
        return bool(np.allclose(np.abs(self.direction), np.eye(3)))

    def shifted(self, irc_offset: Sequence[float]) -> Geometry:
        """The geometry of a sub-grid whose voxel (0, 0, 0) is ``irc_offset`` of this grid."""
        return Geometry(self.irc2xyz(np.asarray(irc_offset, dtype=np.float64)), self.spacing, self.direction)

    def with_spacing(self, spacing: ArrayLike) -> Geometry:
        return Geometry(self.origin, spacing, self.direction)

    def as_dict(self) -> dict[str, list[float]]:
        return {
            "origin": self.origin.tolist(),
            "spacing": self.spacing.tolist(),
            "direction": self.direction.reshape(-1).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[float]]) -> Geometry:
        return cls(
            np.asarray(data["origin"]),
            np.asarray(data["spacing"]),
            np.asarray(data.get("direction", IDENTITY)).reshape(3, 3),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return self.isclose(other, atol=0.0)

    def isclose(self, other: Geometry, *, atol: float = 1e-6) -> bool:
        return bool(
            np.allclose(self.origin, other.origin, rtol=0, atol=atol)
            and np.allclose(self.spacing, other.spacing, rtol=0, atol=atol)
            and np.allclose(self.direction, other.direction, rtol=0, atol=atol)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fmt = lambda a: "(" + ", ".join(f"{v:g}" for v in a) + ")"  # noqa: E731
        direction = "identity" if np.allclose(self.direction, np.eye(3)) else fmt(self.direction.reshape(-1))
        return f"Geometry(origin={fmt(self.origin)}, spacing={fmt(self.spacing)}, direction={direction})"
