"""Overlapping tiles over a volume for whole-scan detection, and which tile owns a detection.

Along each axis, tiles of ``tile`` voxels start every ``tile - overlap`` voxels and the last one ends at the
axis's end (nn-blocks' sliding-window grid); an axis shorter than a tile gets one tile (padded). A
detection belongs to the tile whose centre is nearest along each axis, so every point of the volume has
exactly one owner, at least ``overlap / 2`` voxels inside the owner's edge where the tiles overlap: a
nodule found by two tiles is kept once (and a global NMS merges what remains on either side of a border).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lungtk.nn_blocks.inference import window_starts


@dataclass(frozen=True)
class TileGrid:
    shape: tuple[int, ...]
    tile: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]  # per axis

    @classmethod
    def cover(cls, shape: Sequence[int], tile: Sequence[int], overlap: int) -> TileGrid:
        starts = tuple(
            tuple(window_starts(max(s, t), t, min(overlap, t - 1) / t))
            for s, t in zip(shape, tile, strict=True)
        )
        return cls(tuple(int(s) for s in shape), tuple(int(t) for t in tile), starts)

    def __len__(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    def __iter__(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(tile index per axis, start voxel) of every tile, in C order."""
        for index in itertools.product(*(range(len(s)) for s in self.starts)):
            yield index, tuple(self.starts[a][i] for a, i in enumerate(index))

    def owner(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) tile indices (per axis) owning each point (index, row, col voxels of the volume)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty(points.shape, dtype=np.int64)
        for axis in range(3):
            centres = np.asarray(self.starts[axis], dtype=np.float64) + (self.tile[axis] - 1) / 2
            out[:, axis] = np.abs(points[:, axis : axis + 1] - centres[None, :]).argmin(axis=1)
        return out
