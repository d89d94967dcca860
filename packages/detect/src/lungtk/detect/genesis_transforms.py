"""Models Genesis' image deformations (Zhou et al., MICCAI 2019 / MedIA 2021; MrGiovanni/ModelsGenesis,
``generate_pair``), on numpy cubes with values in [0, 1], applied in the reference's order and at its
probabilities to make (input, target) pairs for self-supervised restoration:

1. ``flips``: while a draw is below 0.4 (at most 3 times), flip a random axis of input and target alike;
2. ``local_shuffle`` (p 0.5): 10 000 random blocks, each side 1 to a tenth of the cube's, the voxels of each
   permuted; blocks read the original cube and a later block overwrites an earlier one where they overlap;
3. ``nonlinear`` (p 0.9): intensities through a monotone Bezier curve with control points (0, 0), two random
   points and (1, 1); half of the time the mapping is reversed (decreasing);
4. painting (p 0.9): in-painting (p 0.2): up to 5 blocks (each further one with p 0.95), sides a sixth to a
   third of the cube's, filled with uniform noise; else out-painting: the cube becomes uniform noise except
   1 + up to 4 (p 0.95 each) windows of the original, sides 3/7 to 4/7 of the cube's.

The target is the (flipped) original. Every draw comes from the ``numpy.random.Generator`` given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Cube = NDArray[np.float32]


@dataclass(frozen=True)
class GenesisRates:
    """The reference's probabilities (``models_genesis_config``)."""

    flip: float = 0.4
    local: float = 0.5
    nonlinear: float = 0.9
    paint: float = 0.9
    inpaint: float = 0.2
    local_blocks: int = 10_000


def flips(x: Cube, y: Cube, rng: np.random.Generator, rate: float = 0.4) -> tuple[Cube, Cube]:
    """Flip input and target together along random axes (each further flip with probability ``rate``)."""
    for _ in range(3):
        if rng.random() >= rate:
            break
        axis = int(rng.integers(3))
        x, y = np.flip(x, axis), np.flip(y, axis)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def local_shuffle(x: Cube, rng: np.random.Generator, blocks: int = 10_000) -> Cube:
    """Permute the voxels inside each of ``blocks`` random small blocks (vectorised: each voxel takes the
    value its last covering block gives it, as the reference's sequential loop does)."""
    shape = np.asarray(x.shape)
    top = np.maximum(shape // 10, 1)
    sizes = rng.integers(1, top + 1, size=(blocks, 3))
    starts = rng.integers(0, shape - sizes + 1)
    counts = sizes.prod(axis=1)
    block = np.repeat(np.arange(blocks), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    local = np.arange(len(block)) - first  # the voxel's position in its block, C order
    _, h, w = sizes[block, 0], sizes[block, 1], sizes[block, 2]
    offset = np.stack([local // (h * w), (local // w) % h, local % w], axis=1)
    flat = np.ravel_multi_index((starts[block] + offset).T, x.shape)
    # a random permutation within each block: sort by (block, random key)
    source = flat[np.lexsort((rng.random(len(block)), block))]
    # the last block covering a voxel wins: order by (voxel, block) and keep each voxel's last entry
    order = np.lexsort((block, flat))
    last = np.r_[flat[order][1:] != flat[order][:-1], True]
    out = x.copy().reshape(-1)
    out[flat[order][last]] = x.reshape(-1)[source[order][last]]
    return out.reshape(x.shape)


def bezier_curve(
    points: NDArray[np.float64], n: int = 1000
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The (x, y) samples of the Bezier curve through control points (k, 2) at ``n`` parameters."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    k = len(points) - 1
    from math import comb

    basis = np.concatenate([comb(k, i) * t**i * (1 - t) ** (k - i) for i in range(k + 1)], axis=1)
    curve = basis @ points
    return curve[:, 0], curve[:, 1]


def nonlinear(x: Cube, rng: np.random.Generator) -> Cube:
    """Map intensities through a random monotone Bezier curve; half of the time a decreasing one."""
    points = np.array([[0.0, 0.0], rng.random(2), rng.random(2), [1.0, 1.0]])
    xs, ys = bezier_curve(points)
    xs, ys = np.sort(xs), np.sort(ys)
    if rng.random() < 0.5:
        ys = ys[::-1]
    return np.interp(x, xs, ys).astype(np.float32)


def _block(
    shape: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64], rng: np.random.Generator
) -> tuple[slice, ...]:
    """A block with sides in [lo, hi] placed 3 voxels or more from the cube's faces (where it fits)."""
    size = np.minimum(rng.integers(lo, hi + 1), shape)
    first = np.minimum(3, shape - size)
    last = np.maximum(shape - size - 3, first)
    start = rng.integers(first, last + 1)
    return tuple(slice(int(a), int(a + s)) for a, s in zip(start, size, strict=True))


def inpaint(x: Cube, rng: np.random.Generator) -> Cube:
    """Up to 5 blocks (sides a sixth to a third of the cube's) filled with uniform noise."""
    shape = np.asarray(x.shape)
    out = x.copy()
    for _ in range(5):
        if rng.random() >= 0.95:
            break
        region = _block(shape, np.maximum(shape // 6, 1), np.maximum(shape // 3, 1), rng)
        out[region] = rng.random(out[region].shape)
    return out


def outpaint(x: Cube, rng: np.random.Generator) -> Cube:
    """Uniform noise everywhere but 1 + up to 4 windows of the original (sides 3/7 to 4/7 of the cube's)."""
    shape = np.asarray(x.shape)
    out = rng.random(x.shape).astype(np.float32)
    lo, hi = shape - 4 * shape // 7, shape - 3 * shape // 7
    region = _block(shape, lo, hi, rng)
    out[region] = x[region]
    for _ in range(4):
        if rng.random() >= 0.95:
            break
        region = _block(shape, lo, hi, rng)
        out[region] = x[region]
    return out


def genesis_pair(
    cube: Cube, rng: np.random.Generator, rates: GenesisRates = GenesisRates()
) -> tuple[Cube, Cube]:
    """(deformed input, target) for one cube (index, row, col) with values in [0, 1]."""
    rates = rates or GenesisRates()
    x = np.asarray(cube, dtype=np.float32)
    x, y = flips(x, x.copy(), rng, rates.flip)
    if rng.random() < rates.local:
        x = local_shuffle(x, rng, rates.local_blocks)
    if rng.random() < rates.nonlinear:
        x = nonlinear(x, rng)
    if rng.random() < rates.paint:
        x = inpaint(x, rng) if rng.random() < rates.inpaint else outpaint(x, rng)
    return x.astype(np.float32, copy=False), y
