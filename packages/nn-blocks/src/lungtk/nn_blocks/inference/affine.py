"""Small affine warps for test-time augmentation: a rotation in the (row, col) plane, i.e. about the
index axis of a 3D image (the only plane of a 2D one), times an isotropic scale, about the image centre.

Matrices are (ndim, ndim), in the image's axis order, in voxel units; ``warp(image, m)`` samples the
image at ``m @ v`` for every voxel offset ``v`` from the centre (``torch.nn.functional.affine_grid`` and
``grid_sample``, linear interpolation), so ``warp(warp(x, m), inv(m))`` gives back ``x`` only
approximately: interpolation smooths, and what ``m`` moves out of the field of view is lost
(``coverage`` says which voxels an inverse warp fills from inside the warped image).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_affines(count: int, ndim: int, rotation: float, scale: float, seed: int) -> list[torch.Tensor]:
    """``count`` matrices: rotation angle uniform in +-``rotation`` degrees, scale in 1 +- ``scale``."""
    rng = np.random.default_rng(seed)
    matrices = []
    for _ in range(count):
        angle = math.radians(rng.uniform(-rotation, rotation))
        factor = rng.uniform(1 - scale, 1 + scale)
        matrix = torch.eye(ndim, dtype=torch.float64)
        c, s = math.cos(angle), math.sin(angle)
        matrix[-2:, -2:] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        matrices.append(matrix * factor)
    return matrices


def warp(image: torch.Tensor, matrix: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """``image`` (C, *spatial) sampled at ``matrix @ offset`` about its centre; float32, same shape."""
    grid = _grid(matrix, tuple(image.shape[1:])).to(image.device)
    sampled = F.grid_sample(
        image[None].float(), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
    return sampled[0]


def coverage(matrix: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """(1, *spatial) float mask: 1 where ``warp(., matrix)`` samples inside the image, else 0."""
    grid = _grid(matrix, spatial)
    return (grid.abs() <= 1).all(dim=-1).to(torch.float32)


def _grid(matrix: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    # affine_grid works on coordinates normalised to [-1, 1], last axis first (x, y[, z]); a voxel offset
    # from the centre along an axis of n voxels is n / 2 times the normalised one (align_corners=False).
    half = torch.tensor(spatial[::-1], dtype=torch.float64) / 2
    reordered = matrix.flip(0).flip(1)
    theta = reordered * half[None, :] / half[:, None]
    theta = torch.cat([theta, torch.zeros(len(spatial), 1, dtype=torch.float64)], dim=1)
    return F.affine_grid(theta[None].float(), [1, 1, *spatial], align_corners=False)
