"""A CT volume: voxels indexed (index, row, col) plus where they sit in patient space."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lungtk.core import Geometry


@dataclass(frozen=True, eq=False)
class CTVolume:
    """Voxels (usually Hounsfield units) in array order (index, row, col) and their ITK/LPS geometry.

    ``series_uid`` is the DICOM SeriesInstanceUID where known, else the file name without extension (as
    LUNA16 names its files). ``path`` is where it was read from, if anywhere.
    """

    array: NDArray[Any]
    geometry: Geometry
    series_uid: str = ""
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a CT volume must be 3D (index, row, col), got shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def extent_mm(self) -> NDArray[np.float64]:
        """Physical size along (x, y, z)."""
        return np.asarray(self.shape[::-1], dtype=np.float64) * self.geometry.spacing

    def xyz2irc(self, xyz: ArrayLike, *, continuous: bool = False) -> NDArray[Any]:
        return self.geometry.xyz2irc(xyz, continuous=continuous)

    def irc2xyz(self, irc: ArrayLike) -> NDArray[np.float64]:
        return self.geometry.irc2xyz(irc)

    def contains_irc(self, irc: ArrayLike) -> NDArray[np.bool_]:
        """Whether voxel indices (N, 3) or (3,) lie inside the array."""
        irc = np.asarray(irc)
        return np.all((irc >= -0.5) & (irc < np.asarray(self.shape) - 0.5), axis=-1)

    @property
    def center_xyz(self) -> NDArray[np.float64]:
        return self.geometry.irc2xyz((np.asarray(self.shape) - 1) / 2.0)

    def with_array(self, array: NDArray[Any], geometry: Geometry | None = None) -> CTVolume:
        return replace(self, array=array, geometry=geometry or self.geometry)

    def __repr__(self) -> str:
        return (
            f"CTVolume(series_uid={self.series_uid!r}, shape={self.shape}, dtype={self.array.dtype}, "
            f"{self.geometry!r})"
        )
