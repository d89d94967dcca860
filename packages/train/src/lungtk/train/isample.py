"""Seed 002's error-region sampling ("isample", Berger et al. 2017): where the network is wrong.

Every ``isample_every`` steps each training scan is tiled with patches (at the patches' spacing), the
network predicts each tile, and the mean absolute error ``|sigmoid(logit) - target|`` of each of
``isample_cells``^3 cells per tile becomes the scan's error map. The sampler then draws patch centres with
a probability proportional to it (plus a small floor). The maps are stored as
``RUN/isample/step<S>/<scan>.npy`` (seed 002 keeps them as .npy too) and the checkpoint names the step of
the maps in use, so a resumed run samples from the same maps. With torchrun each rank maps its share of
the scans.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lungtk.core import LungtkError, atomic_path
from lungtk.train.data.patches import PatchDataset
from lungtk.train.data.samplers import ErrorMaps
from lungtk.train.distributed import Dist


def maps_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "isample" / f"step{step:08d}"


def tile_grid(shape: tuple[int, int, int], extent: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tiles per axis and the centre (native voxels) of every tile covering the scan."""
    tiles = np.maximum(1, np.ceil(np.asarray(shape) / extent).astype(int))
    centres = [(np.asarray(idx) + 0.5) * extent - 0.5 for idx in np.ndindex(*tiles)]
    return tiles, centres


@torch.no_grad()
def error_map(
    model: Any, dataset: PatchDataset, scan: int, cells: int, device: str, autocast: Any, batch: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(error map of ``scan``, native voxels per cell)."""
    record = dataset.records[scan]
    extent = dataset.geometry.extent(record.spacing_irc)
    tiles, centres = tile_grid(record.shape, extent)
    size = np.asarray(dataset.geometry.size)
    if any(s % cells for s in size):
        raise LungtkError(f"setting isample_cells={cells}: the patch {tuple(size)} must divide into it")
    grid = np.zeros(tuple(tiles * cells), dtype=np.float32)
    indices = list(np.ndindex(*tiles))
    for first in range(0, len(centres), batch):
        chunk = range(first, min(first + batch, len(centres)))
        pairs = [dataset.extract(scan, centres[i]) for i in chunk]
        images = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None].to(device)
        targets = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32))[:, None].to(device)
        with autocast():
            logits = model(images)
        logits = logits[0] if isinstance(logits, tuple | list) else logits
        error = (torch.sigmoid(logits.float()[:, :1]) - targets).abs()
        pooled = F.avg_pool3d(error, kernel_size=tuple(int(s // cells) for s in size)).cpu().numpy()
        for j, i in enumerate(chunk):
            lo = np.asarray(indices[i]) * cells
            grid[lo[0] : lo[0] + cells, lo[1] : lo[1] + cells, lo[2] : lo[2] + cells] = pooled[j, 0]
    return grid, extent / cells


def compute_error_maps(
    model: Any,
    dataset: PatchDataset,
    run_dir: Path,
    step: int,
    cells: int,
    device: str,
    autocast: Any,
    dist: Dist,
) -> ErrorMaps:
    """Map every training scan with the current network (each rank its share), write the maps, and read
    them all back."""
    folder = maps_dir(run_dir, step)
    was_training = model.training
    model.eval()
    for scan in range(dist.rank, len(dataset.records), dist.world):
        grid, _ = error_map(model, dataset, scan, cells, device, autocast)
        with atomic_path(folder / f"{scan:06d}.npy") as tmp, tmp.open("wb") as fh:
            np.save(fh, grid)
    model.train(was_training)
    dist.barrier()
    return load_error_maps(dataset, run_dir, step, cells)


def load_error_maps(dataset: PatchDataset, run_dir: Path, step: int, cells: int) -> ErrorMaps:
    folder = maps_dir(run_dir, step)
    maps, cell = {}, {}
    for scan, record in enumerate(dataset.records):
        path = folder / f"{scan:06d}.npy"
        try:
            maps[scan] = np.load(path)
        except (OSError, ValueError):
            raise LungtkError(
                f"{path}: the error map of step {step} is missing or damaged; the run cannot resume exactly "
                "(start it again without --resume)"
            ) from None
        cell[scan] = dataset.geometry.extent(record.spacing_irc) / cells
        if not math.isfinite(float(maps[scan].sum())):
            raise LungtkError(f"{path}: the error map holds non-finite values")
    return ErrorMaps(maps, cell, step)
