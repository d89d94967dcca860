"""Seeded augmentation of an image and its mask together, on numpy arrays (index, row, col) or (row, col).

Each transform draws its parameters from the generator it is given, so one seed gives one result. Images
are warped with linear interpolation, masks with nearest-neighbour so labels stay labels; noise touches the
image only. Images come out as float32 (augment after normalising).

    >>> aug = preset("seed001")
    >>> image, mask = aug(crop, mask, rng=np.random.default_rng(7))

The presets follow the seed papers: ``seed000`` (flips, 90-degree rotations, elastic deformation, noise),
``seed001`` (mirroring, shifts, scaling, rotation about the index axis, noise) and ``seed002`` (affine,
elastic and Gaussian noise, each with probability 0.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import LungtkError

Array = NDArray[np.generic]
Pair = tuple[NDArray[np.float32], Array | None]


class Transform(Protocol):
    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair: ...


@dataclass(frozen=True)
class Flip:
    """Mirror each of ``axes`` independently with probability ``p``."""

    axes: tuple[int, ...] = (0, 1, 2)
    p: float = 0.5

    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair:
        flipped = tuple(a for a in self.axes if a < image.ndim and rng.random() < self.p)
        if not flipped:
            return image, mask
        return np.flip(image, flipped), None if mask is None else np.flip(mask, flipped)


@dataclass(frozen=True)
class Rot90:
    """With probability ``p``, rotate by k * 90 degrees (k in 1..3) in the plane of the last two axes."""

    p: float = 0.75

    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, mask
        k = int(rng.integers(1, 4))
        return np.rot90(image, k, axes=(-2, -1)), None if mask is None else np.rot90(mask, k, axes=(-2, -1))


@dataclass(frozen=True)
class Affine:
    """Shift, per-axis scaling, shear and rotation about the index axis (in the row-col plane), about the
    centre.

    ``shift``: the largest shift as a fraction of each axis' size; ``scale``: the largest relative change
    per axis (0.2 draws factors in [0.8, 1.2]); ``shear``: the largest row-col shear coefficient;
    ``rotate_deg``: the largest rotation angle either way.
    Voxels pulled from outside the array copy the nearest edge voxel (``mode``; see scipy.ndimage).
    """

    shift: float = 0.1
    scale: float = 0.2
    rotate_deg: float = 180.0
    shear: float = 0.0
    p: float = 1.0
    mode: str = "nearest"

    def matrix(self, ndim: int, rng: np.random.Generator) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The forward map ``out = A @ (in - centre) + centre + t`` as (A, t in fractions of the shape)."""
        scale = 1.0 + rng.uniform(-self.scale, self.scale, ndim)
        angle = math.radians(rng.uniform(-self.rotate_deg, self.rotate_deg))
        rotation = np.eye(ndim)
        c, s = math.cos(angle), math.sin(angle)
        rotation[-2:, -2:] = [[c, -s], [s, c]]
        shear = np.eye(ndim)
        shear[-2, -1] = rng.uniform(-self.shear, self.shear)
        shift = rng.uniform(-self.shift, self.shift, ndim)
        return rotation @ shear @ np.diag(scale), shift

    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, mask
        forward, shift = self.matrix(image.ndim, rng)
        return warp_affine(image, mask, forward, shift * np.asarray(image.shape), mode=self.mode)


def warp_affine(
    image: NDArray[np.float32],
    mask: Array | None,
    forward: NDArray[np.float64],
    shift: NDArray[np.float64],
    *,
    mode: str = "nearest",
) -> Pair:
    """Apply ``out = forward @ (in - centre) + centre + shift`` (voxels) to the image and its mask."""
    centre = (np.asarray(image.shape, dtype=float) - 1) / 2
    inverse = np.linalg.inv(forward)
    offset = centre - inverse @ (centre + shift)
    warped = ndimage.affine_transform(image, inverse, offset, order=1, mode=mode)
    if mask is None:
        return warped, None
    return warped, ndimage.affine_transform(mask, inverse, offset, order=0, mode=mode)


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """Uniform noise in [-1, 1] blurred by a Gaussian of ``sigma`` voxels. It is drawn on a grid sigma / 2
    times coarser, blurred there and interpolated up (linear): the same smoothness at a fraction of the
    cost of blurring full-resolution noise (the blur was 40 % of a 64^3 NoduleNet patch's loading)."""
    step = max(1.0, sigma / 2.0)
    coarse = tuple(max(2, math.ceil((n - 1) / step) + 1) for n in shape)
    field = ndimage.gaussian_filter(rng.uniform(-1, 1, coarse).astype(np.float32), sigma / step)
    return ndimage.zoom(field, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)


@dataclass(frozen=True)
class Elastic:
    """A smooth random displacement field: uniform noise blurred by a Gaussian of ``sigma`` voxels, scaled
    so the largest displacement along each axis is ``magnitude`` voxels (both drawn from their ranges)."""

    sigma: tuple[float, float] = (4.0, 6.0)
    magnitude: tuple[float, float] = (1.0, 3.0)
    p: float = 0.5
    mode: str = "nearest"

    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, mask
        sigma = rng.uniform(*self.sigma)
        magnitude = rng.uniform(*self.magnitude)
        grid = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in image.shape), indexing="ij")
        coords = []
        for axis_grid in grid:
            field = _smooth_noise(image.shape, sigma, rng)
            peak = float(np.abs(field).max()) or 1.0
            coords.append(axis_grid + field * (magnitude / peak))
        warped = ndimage.map_coordinates(image, coords, order=1, mode=self.mode)
        if mask is None:
            return warped, None
        return warped, ndimage.map_coordinates(mask, coords, order=0, mode=self.mode)


@dataclass(frozen=True)
class GaussianNoise:
    """Add N(mean, std) to every image voxel with probability ``p``; the mask is untouched."""

    std: float = 0.1
    mean: float = 0.0
    p: float = 1.0

    def __call__(self, image: NDArray[np.float32], mask: Array | None, rng: np.random.Generator) -> Pair:
        if rng.random() >= self.p:
            return image, mask
        noise = rng.normal(self.mean, self.std, image.shape).astype(np.float32)
        return image + noise, mask


@dataclass(frozen=True)
class Augmentation:
    """Transforms applied in order to an image and (optionally) its mask."""

    transforms: Sequence[Transform] = field(default_factory=tuple)

    def __call__(
        self, image: Array, mask: Array | None = None, *, rng: np.random.Generator | int | None = None
    ) -> Pair:
        if mask is not None and mask.shape != image.shape:
            raise LungtkError(f"augmentation: mask shape {mask.shape} differs from image shape {image.shape}")
        if image.ndim not in (2, 3):
            raise LungtkError(f"augmentation takes 2D or 3D arrays, got shape {image.shape}")
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        out: NDArray[np.float32] = np.asarray(image, dtype=np.float32)
        for transform in self.transforms:
            out, mask = transform(out, mask, generator)
        return np.ascontiguousarray(out), None if mask is None else np.ascontiguousarray(mask)


PRESETS: dict[str, Augmentation] = {
    # Seed 000: flips, 90-degree rotations, elastic deformation and noise (no arbitrary angles). The
    # paper gives no noise level; 0.03 is about 25 HU on the unit window's [-1, 1] scale.
    "seed000": Augmentation((Flip(), Rot90(), Elastic(), GaussianNoise(std=0.03))),
    # Seed 001 (after Deep Learning with PyTorch): mirroring, +-10% shifts, +-20% scaling, any rotation
    # about the index axis, noise of 25 (the book augments HU clipped to [-1000, 1000], not normalised).
    "seed001": Augmentation(
        (Flip(), Affine(shift=0.1, scale=0.2, rotate_deg=180.0), GaussianNoise(std=25.0))
    ),
    # Seed 002: affine (rotation, shear, shift, scaling) and elastic transforms and N(0, 0.1) noise, each
    # with probability 0.2. The paper gives no ranges; these are moderate.
    "seed002": Augmentation(
        (
            Affine(shift=0.05, scale=0.1, rotate_deg=15.0, shear=0.1, p=0.2),
            Elastic(p=0.2),
            GaussianNoise(std=0.1, p=0.2),
        )
    ),
}


def preset(name: str) -> Augmentation:
    try:
        return PRESETS[name]
    except KeyError:
        raise LungtkError(
            f"unknown augmentation preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
