"""The chest: body outline (fat, muscle), ribs, spine and sternum, mediastinum with heart, aorta and
trachea, two lungs with textured parenchyma, and the pulmonary vessel tree.

Everything is laid out in mm about the volume's centre and scaled to the field of view, so any shape and
spacing gives a whole chest. Axes: x to the patient's left (columns), y posterior (rows), z superior
(slices), as ITK/LPS and LUNA16 scans have them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core.labels import AIR_HU as HU_AIR

HU_FAT, HU_MUSCLE, HU_BLOOD, HU_LUNG = -100.0, 45.0, 40.0, -860.0
HU_BONE_MARROW, HU_BONE_CORTEX, HU_HEART = 300.0, 900.0, 35.0


@dataclass
class Grid:
    """1D coordinate arrays (mm about the centre) shaped to broadcast over (index, row, col)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]  # (z, y, x)

    def __post_init__(self) -> None:
        nz, ny, nx = self.shape
        sz, sy, sx = self.spacing
        self.z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)[:, None, None]
        self.y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)[None, :, None]
        self.x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)[None, None, :]
        self.half = np.array([nz * sz, ny * sy, nx * sx], dtype=np.float32) / 2  # (z, y, x) half extents

    def to_mm(self, irc: NDArray) -> NDArray[np.float64]:
        return (np.asarray(irc, dtype=float) - (np.asarray(self.shape) - 1) / 2) * np.asarray(self.spacing)

    def to_irc(self, mm: NDArray) -> NDArray[np.float64]:
        return np.asarray(mm, dtype=float) / np.asarray(self.spacing) + (np.asarray(self.shape) - 1) / 2


@dataclass
class Segment:
    a: NDArray[np.float64]  # (z, y, x) mm
    b: NDArray[np.float64]
    radius: float
    depth: int


@dataclass
class Chest:
    hu: NDArray[np.float32]
    lungs: NDArray[np.bool_]
    body: NDArray[np.bool_]
    vessels: list[Segment] = field(default_factory=list)
    hila: list[NDArray[np.float64]] = field(default_factory=list)


def _smooth_noise(
    shape: tuple[int, ...], rng: np.random.Generator, factor: int, sigma: float
) -> NDArray[np.float32]:
    """Smooth noise of unit std: Gaussian noise on a grid ``factor`` times coarser, blurred, upsampled."""
    coarse = [max(2, n // factor + 2) for n in shape]
    field_ = ndimage.gaussian_filter(rng.normal(size=coarse).astype(np.float32), sigma)
    field_ /= field_.std() or 1.0
    zoomed = ndimage.zoom(field_, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
    return zoomed[tuple(slice(0, n) for n in shape)]


def build_chest(grid: Grid, rng: np.random.Generator) -> Chest:
    z, y, x = grid.z, grid.y[0], grid.x[0]  # z: (nz, 1, 1); y, x: 2D-broadcastable (ny, 1), (1, nx)
    nz = grid.shape[0]
    hz, hy, hx = (float(v) for v in grid.half)
    a = 0.93 * hx * rng.uniform(0.96, 1.0)  # body semi-axes: left-right, antero-posterior
    b = min(0.72 * hx, 0.93 * hy) * rng.uniform(0.95, 1.0)
    cy = 0.03 * b
    # The body outline and everything that runs the length of the chest, on one slice.
    r_body = np.sqrt((x / a) ** 2 + ((y - cy) / b) ** 2)
    fat, muscle = rng.uniform(0.05, 0.09), rng.uniform(0.06, 0.08)
    inner = 1.0 - fat - muscle
    body2d = r_body <= 1.0
    base = np.where(r_body > 1.0 - fat, HU_FAT, np.where(r_body > inner, HU_MUSCLE, HU_MUSCLE - 5))
    base = np.where(body2d, base, HU_AIR)
    aorta = ((x - 0.12 * a) ** 2 + (y - cy - 0.45 * b) ** 2) <= (0.075 * a) ** 2
    base[aorta] = HU_BLOOD + 10
    spine_r2 = x**2 + (y - cy - 0.62 * b) ** 2
    vert = spine_r2 <= (0.12 * a) ** 2
    cortex = vert & (spine_r2 >= (0.10 * a) ** 2)
    base[vert] = HU_BONE_MARROW
    base[cortex] = HU_BONE_CORTEX
    base[(x**2 + (y - cy - 0.80 * b) ** 2) <= (0.045 * a) ** 2] = 20.0  # spinal canal
    base[((x / (0.10 * a)) ** 2 + ((y - cy + 0.83 * b) / (0.04 * b)) ** 2) <= 1.0] = HU_BONE_MARROW  # sternum
    hu = np.repeat(base.astype(np.float32)[None], nz, axis=0)
    zs = z[:, 0, 0]
    for k in np.flatnonzero(np.mod(zs, 28.0) < 5.0):  # intervertebral discs
        hu[k][vert & ~cortex] = 80.0

    # Lungs: elliptic cross-sections that taper to the apex and sit on a domed diaphragm.
    # The lungs are about as tall as the chest is wide; a longer field of view shows the upper abdomen.
    z_top = 0.85 * hz
    height = min(1.55 * hz, 2.6 * a)
    z_base = z_top - height
    lungs = np.zeros(grid.shape, dtype=bool)
    for side in (-1.0, 1.0):  # -1: the patient's right (negative x)
        cx = side * 0.43 * a * rng.uniform(0.97, 1.03)
        ax, ay = 0.36 * a * rng.uniform(0.95, 1.05), 0.70 * b * rng.uniform(0.95, 1.02)
        r2 = (np.abs((x - cx) / ax) ** 2.4 + np.abs((y - cy - 0.05 * b) / ay) ** 2.4).astype(np.float32)
        taper = np.clip((z_top - z) / (0.35 * height), 0, 1) ** 0.6  # 0 at the apex
        dome = (z_base + (0.18 if side < 0 else 0.12) * height * np.clip(1 - r2, 0, 1)).astype(np.float32)
        lungs |= (r2 <= taper**2) & (z >= dome)
    heart = (
        ((x - 0.12 * a) / (0.33 * a)) ** 2
        + ((y - cy + 0.22 * b) / (0.38 * b)) ** 2
        + ((z - z_base - 0.05 * hz) / (0.45 * hz)) ** 2
    ) <= 1.0
    lungs &= ~heart
    hu[heart & body2d & ~np.broadcast_to(vert, grid.shape)] = HU_HEART
    carina_z = z_top - 0.4 * height
    trachea2d = (x**2 + (y - cy + 0.05 * b) ** 2) <= (0.055 * a) ** 2
    hu[zs >= carina_z] = np.where(trachea2d, HU_AIR + 30, hu[zs >= carina_z])

    # Ribs: bands inside the muscle wall, repeating along z and running down towards the front.
    band = (r_body > inner - 0.06) & (r_body < inner - 0.015) & (np.abs(x) > 0.12 * a)
    rows, cols = np.nonzero(band)
    period, phase = rng.uniform(24.0, 30.0), rng.uniform(0, 30.0)
    rib_z = np.mod(zs[:, None] + 0.35 * (grid.y[0, rows, 0] - cy)[None, :] + phase, period)
    in_range = ((zs > z_base - 0.1 * hz) & (zs < z_top))[:, None]
    rib = (rib_z < 9.0) & in_range
    values = np.where((rib_z > 2.0) & (rib_z < 7.0), HU_BONE_MARROW, HU_BONE_CORTEX)
    slab = hu[:, rows, cols]
    hu[:, rows, cols] = np.where(rib, values, slab)
    rib_lung = np.zeros(grid.shape, dtype=bool)
    rib_lung[:, rows, cols] = rib
    lungs &= ~rib_lung

    # Parenchyma: a gravity gradient (the posterior, dependent lung is denser) and a soft texture.
    texture = _smooth_noise(grid.shape, rng, 6, 1.5)
    np.copyto(hu, HU_LUNG + 25.0 * (grid.y / b) + 18.0 * texture, where=lungs)

    hila = [np.array([carina_z - 0.07 * height, cy, side * 0.16 * a]) for side in (-1.0, 1.0)]
    return Chest(hu, lungs, np.broadcast_to(body2d, grid.shape), hila=hila)


def grow_vessels(
    chest: Chest, grid: Grid, rng: np.random.Generator, *, max_depth: int = 10, max_segments: int = 3000
) -> list[Segment]:
    """Branching trees from each hilum into its lung: each branch splits in two thinner, shorter ones at
    20-40 degrees; a branch that would leave the lung is shortened, then dropped."""
    step = np.array([2, 4, 4])
    lung_low = chest.lungs[::2, ::4, ::4]  # a coarse copy for "is this point in the lung" tests

    def inside(p: NDArray[np.float64]) -> bool:
        irc = np.round(grid.to_irc(p) / step).astype(int)
        return bool(np.all(irc >= 0) and np.all(irc < lung_low.shape) and lung_low[tuple(irc)])

    segments: list[Segment] = []
    for hilum in chest.hila:
        side = np.sign(hilum[2])
        stack = []
        for direction in (
            [0.8, 0.0, 0.5],
            [-0.8, 0.1, 0.5],
            [0.1, -0.7, 0.6],
            [0.0, 0.7, 0.6],
            [0.0, 0.0, 1.0],
        ):
            d = np.array(direction) * np.array([1, 1, side])
            stack.append((hilum.copy(), d / np.linalg.norm(d), rng.uniform(4.0, 5.5), 0))
        while stack and len(segments) < max_segments:
            start, direction, radius, depth = stack.pop()
            length = rng.uniform(10.0, 20.0) * 0.88**depth
            end = start + direction * length
            for _ in range(3):
                if depth == 0 or (inside(end) and inside((start + end) / 2)):
                    break
                length *= 0.6
                end = start + direction * length
            else:
                continue
            segments.append(Segment(start, end, radius, depth))
            if depth >= max_depth or radius < 0.6:
                continue
            for sign in (-1.0, 1.0):
                turn = rng.normal(size=3)
                turn -= (turn @ direction) * direction
                turn /= np.linalg.norm(turn) or 1.0
                angle = math.radians(rng.uniform(20, 40))
                child = direction * math.cos(angle) + sign * turn * math.sin(angle)
                stack.append(
                    (end, child / np.linalg.norm(child), radius * rng.uniform(0.72, 0.82), depth + 1)
                )
    return segments


def draw_segments(hu: NDArray[np.float32], grid: Grid, segments: list[Segment], value: float) -> None:
    """Paint tubes with partial-volume edges (occupancy from the distance to each segment's axis)."""
    spacing = np.asarray(grid.spacing)
    voxel = float(spacing.min())
    for seg in segments:
        lo = np.floor(grid.to_irc(np.minimum(seg.a, seg.b) - seg.radius - voxel)).astype(int)
        hi = np.ceil(grid.to_irc(np.maximum(seg.a, seg.b) + seg.radius + voxel)).astype(int) + 1
        lo, hi = np.maximum(lo, 0), np.minimum(hi, grid.shape)
        if np.any(hi <= lo):
            continue
        axes = [
            ((np.arange(start, stop) - (n - 1) / 2) * s).astype(np.float32)
            for start, stop, n, s in zip(lo, hi, grid.shape, spacing, strict=True)
        ]
        pz, py, px = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
        ab = seg.b - seg.a
        t = ((pz - seg.a[0]) * ab[0] + (py - seg.a[1]) * ab[1] + (px - seg.a[2]) * ab[2]) / float(ab @ ab)
        t = np.clip(t, 0.0, 1.0)
        d = np.sqrt(
            (pz - seg.a[0] - t * ab[0]) ** 2
            + (py - seg.a[1] - t * ab[1]) ** 2
            + (px - seg.a[2] - t * ab[2]) ** 2
        )
        w = np.clip((seg.radius - d) / voxel + 0.5, 0.0, 1.0)
        view = hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        np.maximum(view, view * (1 - w) + value * w, out=view)
