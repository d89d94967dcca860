"""The patch dataset: a :class:`PatchRequest` in, an image patch (and its target) out.

Scans are read through the volume cache (decoded once, memory-mapped), so a patch costs a crop, not a
decode. A patch is cut at the scan's own spacing, or resampled on the fly to ``spacing`` (linear for the
image, nearest for the mask, one shared mapping), windowed, then augmented with a generator seeded by the
request alone: the same request gives the same patch in any worker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.ct_io.augment import Augmentation, preset
from lungtk.ct_io.cache import VolumeCache
from lungtk.ct_io.crops import crop_array
from lungtk.ct_io.preprocess import get_window
from lungtk.train.data.samplers import PatchRequest
from lungtk.train.data.sources import ScanRecord
from lungtk.train.data.targets import paste_pieces


@dataclass(frozen=True)
class PatchGeometry:
    """Patch size (voxels) and target spacing (x, y, z mm; None: each scan's own)."""

    size: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float] | None = None

    def scale(self, spacing_irc: Sequence[float]) -> np.ndarray:
        """Native voxels per patch voxel along (index, row, col)."""
        if self.spacing_xyz is None:
            return np.ones(3)
        return np.asarray(self.spacing_xyz[::-1], dtype=float) / np.asarray(spacing_irc, dtype=float)

    def extent(self, spacing_irc: Sequence[float]) -> np.ndarray:
        """The native voxels a patch spans."""
        return np.asarray(self.size, dtype=float) * self.scale(spacing_irc)

    def region(
        self, centre: Sequence[float], spacing_irc: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(native start, native size, sampling offset within it) of the patch centred on ``centre``."""
        size = np.asarray(self.size)
        if self.spacing_xyz is None:
            start = np.floor(np.asarray(centre, dtype=float) + 0.5).astype(np.int64) - size // 2
            return start, size, np.zeros(3)
        scale = self.scale(spacing_irc)
        first = np.asarray(centre, dtype=float) - (size - 1) / 2 * scale
        last = first + (size - 1) * scale
        start = np.floor(first).astype(np.int64) - 1
        stop = np.ceil(last).astype(np.int64) + 2
        return start, stop - start, first - start


def resample_patch(
    array: NDArray[Any], geometry: PatchGeometry, scale: np.ndarray, offset: np.ndarray, order: int
) -> NDArray[Any]:
    if geometry.spacing_xyz is None:
        return array
    return ndimage.affine_transform(
        array,
        scale,
        offset=offset,
        output_shape=geometry.size,
        order=order,
        mode="nearest",
        output=np.float32 if order else array.dtype,
    )


class PatchDataset(torch.utils.data.Dataset):
    """Indexed by :class:`PatchRequest` (the sampler's output), not by integers.

    Returns ``{"image": (1, *size) float32, "target": (1, *size) float32}`` for segmentation
    (``target="mask"``), ``{"image", "label": int64}`` for classification or ``{"image"}`` alone
    (``target="none"``), plus ``"scan"``.
    """

    def __init__(
        self,
        records: Sequence[ScanRecord],
        geometry: PatchGeometry,
        *,
        window: str = "unit",
        augmentation: str = "none",
        target: str = "mask",
        cache_root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.records = list(records)
        self.geometry = geometry
        self.window_name = window
        self.window = get_window(window)
        self.augmentation: Augmentation | None = (
            None if augmentation in ("", "none") else preset(augmentation)
        )
        self.target = target
        self.with_labels = target == "mask" and any(r.positive_labels.size for r in self.records)
        self.cache_root = cache_root
        self._cache: VolumeCache | None = None

    def __getstate__(self) -> dict[str, Any]:  # workers started by spawn map the cache themselves
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    @property
    def cache(self) -> VolumeCache:
        if self._cache is None:
            self._cache = VolumeCache(self.cache_root)
        return self._cache

    def __len__(self) -> int:  # requests come from a sampler; there is no integer index
        return 0

    def extract(
        self, scan: int, centre: Sequence[float]
    ) -> tuple[NDArray[np.float32], NDArray[np.uint8] | None]:
        """The windowed image patch and (segmentation) its 0/1 target, without augmentation."""
        record = self.records[scan]
        start, size, offset = self.geometry.region(centre, record.spacing_irc)
        hu = crop_array(self.cache.get(record.image).array, start, size.tolist())  # padded as air
        scale = self.geometry.scale(record.spacing_irc)
        image = self.window(resample_patch(hu, self.geometry, scale, offset, 1))
        if self.target != "mask":
            return image, None
        mask = np.zeros(tuple(size), dtype=np.uint8)
        for path in record.masks:
            mask |= crop_array(self.cache.get(path).array, start, size.tolist(), 0) > 0
        if record.pieces:
            mask |= paste_pieces(record.pieces, start, size.tolist())
        return image, resample_patch(mask, self.geometry, scale, offset, 0)

    def label_at(self, scan: int, centre: Sequence[float]) -> int:
        """The class of the nodule whose centre lies in the patch (the one nearest the patch's centre),
        -1 when the patch holds none."""
        record = self.records[scan]
        if not record.positive_labels.size:
            return -1
        half = self.geometry.extent(record.spacing_irc) / 2
        offset = np.abs(record.positives - np.asarray(centre, dtype=float))
        inside = np.all(offset <= half, axis=1)
        if not inside.any():
            return -1
        nearest = np.argmin(np.where(inside, np.linalg.norm(offset, axis=1), np.inf))
        return int(record.positive_labels[nearest])

    def __getitem__(self, request: PatchRequest) -> dict[str, Any]:
        image, mask = self.extract(request.scan, request.centre)
        if self.augmentation is not None and request.augment:
            image, mask = self.augmentation(image, mask, rng=np.random.default_rng(request.seed))
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "scan": request.scan,
        }
        if mask is not None:
            item["target"] = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
            if self.with_labels:
                item["label"] = torch.tensor(self.label_at(request.scan, request.centre), dtype=torch.int64)
        elif self.target == "label":
            item["label"] = torch.tensor(request.label, dtype=torch.int64)
        return item
