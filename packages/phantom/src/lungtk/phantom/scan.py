"""One phantom scan: chest anatomy, vessels, nodules with exact labels, decoy candidates, scanner blur and
noise, in a geometry like a real scan's (anisotropic spacing, non-zero origin, optionally tilted)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import Geometry, equivalent_diameter
from lungtk.core.labels import STORED_HU, pathology_of
from lungtk.ct_io import CTVolume
from lungtk.fleischner import Texture, parse_texture
from lungtk.phantom import shapes
from lungtk.phantom.anatomy import HU_BLOOD, Grid, build_chest, draw_segments, grow_vessels
from lungtk.phantom.lidc import LidcNodule

DEFAULT_SHAPE = (160, 256, 256)
SLICE_SPACINGS = (1.0, 1.25, 1.5, 2.0, 2.5)
HU = {
    Texture.SOLID: (10.0, 60.0),
    Texture.GROUND_GLASS: (-700.0, -500.0),
    Texture.PART_SOLID: (-650.0, -500.0),
}
SOLID_CORE_HU = (0.0, 50.0)


@dataclass(frozen=True)
class PhantomNodule:
    finding: int  # 1..n, also the nodule's value in the label mask
    center_xyz: tuple[float, float, float]
    diameter_mm: float  # equivalent diameter of the label
    volume_mm3: float
    texture: Texture
    texture_rating: float
    malignancy: float
    solid_component_mm: float
    placement: str  # parenchymal, juxtapleural or juxtavascular
    source: str  # lidc:<patient>:<annotation id>, or parametric

    @property
    def pathology(self) -> str | None:
        """AAH+AIS / MIA / IAC of a subsolid nodule by its solid part (lungtk.core.labels.pathology_of)."""
        return pathology_of(self.texture.value, self.solid_component_mm)


@dataclass
class PhantomScan:
    ct: CTVolume
    labels: NDArray[np.uint8]
    nodules: list[PhantomNodule]
    decoys_xyz: NDArray[np.float64]  # (M, 3) candidate points that are not nodules
    lungs: NDArray[np.bool_] = field(repr=False)

    @property
    def series_uid(self) -> str:
        return self.ct.series_uid


def series_uid(seed: int, index: int) -> str:
    """A valid DICOM UID under the UUID-derived root 2.25, stable for a seed and index."""
    digest = hashlib.sha256(f"lungtk-phantom:{seed}:{index}".encode()).hexdigest()
    return f"2.25.{int(digest[:30], 16)}"


def _geometry(grid: Grid, rng: np.random.Generator, oblique: bool) -> Geometry:
    sz, sy, sx = grid.spacing
    _nz, ny, nx = grid.shape
    origin = np.array(
        [
            -nx * sx / 2 + rng.uniform(-15, 15),
            -ny * sy / 2 + rng.uniform(-15, 15),
            rng.uniform(-380.0, -120.0),
        ]
    )
    direction = np.eye(3)
    if oblique:  # a gantry tilt: slices rotated about the left-right axis
        t = math.radians(rng.uniform(5.0, 15.0)) * rng.choice([-1.0, 1.0])
        direction = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
    return Geometry(origin, np.array([sx, sy, sz]), direction)


def _pick_shape(
    library: tuple[LidcNodule, ...] | None,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    ggn_fraction: float | None = None,
) -> shapes.NoduleShape:
    """A nodule shape; with ``ggn_fraction``, a subsolid one (ground-glass or part-solid) with that
    probability and a solid one otherwise (the data set's own mix when None)."""
    subsolid = None if ggn_fraction is None else bool(rng.random() < ggn_fraction)
    if library:
        pool = library
        if subsolid is not None:
            pool = (
                tuple(n for n in library if (parse_texture(n.texture) is not Texture.SOLID) == subsolid)
                or library
            )
        return shapes.from_lidc(pool[int(rng.integers(len(pool)))], spacing, rng)
    diameter = float(np.exp(rng.uniform(math.log(4.0), math.log(25.0))))
    texture = None
    if subsolid is not None:
        subsolid_kinds = (Texture.GROUND_GLASS, Texture.PART_SOLID)
        texture = subsolid_kinds[int(rng.integers(2))] if subsolid else Texture.SOLID
    return shapes.parametric(diameter, spacing, rng, texture=texture)


def _place(
    shape: shapes.NoduleShape,
    depth_mm: NDArray[np.float32],
    depth_step: NDArray[np.int64],
    lungs: NDArray[np.bool_],
    parenchyma: NDArray[np.bool_],
    grid: Grid,
    vessels: list,
    taken: list[tuple[NDArray[np.float64], float]],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], str] | None:
    """A centre (irc) for the nodule: deep in the lung, against the pleura, or against a vessel."""
    radius = 0.5 * float(np.max(np.asarray(shape.occupancy.shape) * np.asarray(grid.spacing))) / 1.3
    kind = rng.choice(["parenchymal", "juxtapleural", "juxtavascular"], p=[0.65, 0.2, 0.15])
    for _ in range(30):
        if kind == "juxtavascular":
            thick = [s for s in vessels if s.radius >= 1.5 and s.depth >= 1]
            if not thick:
                kind = "parenchymal"
                continue
            seg = thick[int(rng.integers(len(thick)))]
            on_axis = seg.a + rng.uniform(0.2, 0.8) * (seg.b - seg.a)
            axis = (seg.b - seg.a) / np.linalg.norm(seg.b - seg.a)
            away = rng.normal(size=3)
            away -= (away @ axis) * axis
            away /= np.linalg.norm(away) or 1.0
            centre = grid.to_irc(on_axis + away * (seg.radius + 0.8 * radius))
            low = np.round(centre / depth_step).astype(int)
            if np.any(low < 0) or np.any(low >= depth_mm.shape) or depth_mm[tuple(low)] < radius:
                continue
        else:
            # A juxta-pleural nodule touches the pleura but lies mostly in the lung (the pleura is tangent).
            want = (radius + 2.0, np.inf) if kind == "parenchymal" else (0.6 * radius, 1.0 * radius)
            options = np.argwhere((depth_mm >= want[0]) & (depth_mm <= want[1]))
            if not len(options):
                kind = "parenchymal" if kind == "juxtapleural" else kind
                continue
            low = options[int(rng.integers(len(options)))]
            centre = low * depth_step + rng.uniform(0, 1, 3) * depth_step
            inside = np.minimum(np.round(centre).astype(int), np.asarray(lungs.shape) - 1)
            if not lungs[tuple(inside)]:
                continue
        # The coarse depth map and the random offset within its cell miss by up to a cell (several mm):
        # check the nodule's own voxels, at full resolution, against what its placement promises.
        if not _footprint_fits(shape.label, centre, lungs, parenchyma, grid.spacing, str(kind)):
            continue
        mm = grid.to_mm(centre)
        if all(np.linalg.norm(mm - other) > radius + r + 4.0 for other, r in taken):
            taken.append((mm, radius))
            return centre, str(kind)
    return None


PARENCHYMAL_MARGIN_MM = 2.0  # lung all around a parenchymal nodule, at least this deep
OWN_PLACE = 0.85  # the least fraction of a nodule's voxels in lung parenchyma (not vessel, not chest wall)
PARENCHYMA_HU = -400.0  # lung below this HU is parenchyma; above it, a vessel


def _box(centre: NDArray[np.float64], shape: tuple[int, ...]) -> NDArray[np.int64]:
    """The scan index of a nodule grid's first voxel when the grid is centred on ``centre`` (irc)."""
    return np.round(centre - (np.asarray(shape) - 1) / 2).astype(int)


def _fraction_inside(
    footprint: NDArray[np.bool_],
    centre: NDArray[np.float64],
    region: NDArray[np.bool_],
    margin: tuple[int, int, int] = (0, 0, 0),
) -> tuple[float, float]:
    """The fraction of ``footprint`` (centred on ``centre``) inside ``region``, and that of the footprint
    grown by ``margin`` voxels along each axis (a box); outside the scan counts as outside."""
    pad = [(m, m) for m in margin]
    core = np.pad(footprint, pad)
    grown = ndimage.binary_dilation(core, structure=np.ones([2 * m + 1 for m in margin], bool))
    lo = _box(centre, footprint.shape) - np.asarray(margin)
    clip_lo, clip_hi = np.maximum(lo, 0), np.minimum(lo + grown.shape, region.shape)
    inside = np.zeros(grown.shape, dtype=bool)
    if np.all(clip_hi > clip_lo):
        box = tuple(slice(a, b) for a, b in zip(clip_lo, clip_hi, strict=True))
        inner = tuple(slice(a - o, b - o) for a, b, o in zip(clip_lo, clip_hi, lo, strict=True))
        inside[inner] = region[box]
    return float(inside[core].mean()), float(inside[grown].mean())


def _footprint_fits(
    footprint: NDArray[np.bool_],
    centre: NDArray[np.float64],
    lungs: NDArray[np.bool_],
    parenchyma: NDArray[np.bool_],
    spacing: tuple[float, float, float],
    placement: str,
) -> bool:
    """Whether a nodule's voxels at ``centre`` lie where its placement says. Every nodule lies mostly
    (``OWN_PLACE``) in parenchyma, not inside a vessel or the chest wall; a parenchymal one has lung all
    around, ``PARENCHYMAL_MARGIN_MM`` deep; a juxtavascular one lies wholly in the lung; a juxtapleural one
    touches the lung's edge."""
    if not footprint.any() or _fraction_inside(footprint, centre, parenchyma)[0] < OWN_PLACE:
        return False
    if placement == "parenchymal":
        margin = tuple(math.ceil(PARENCHYMAL_MARGIN_MM / s) for s in spacing)
        return _fraction_inside(footprint, centre, lungs, margin)[1] == 1.0  # type: ignore[arg-type]
    own, grown = _fraction_inside(footprint, centre, lungs, (1, 1, 1))
    return own == 1.0 if placement == "juxtavascular" else grown < 1.0


def make_scan(
    seed: int,
    index: int = 0,
    *,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] | None = None,
    oblique: bool = False,
    library: tuple[LidcNodule, ...] | None = None,
    n_nodules: int | None = None,
    ggn_fraction: float | None = None,
) -> PhantomScan:
    """Scan ``index`` of the phantom set ``seed``. ``spacing`` is (x, y, z) mm (random like real scans when
    None); ``library`` holds LIDC nodules to draw shapes from (parametric shapes when None or empty);
    ``ggn_fraction`` is the probability of a subsolid nodule (None: the library's own mix)."""
    rng = np.random.default_rng([seed, index])
    if spacing is None:
        in_plane = round(float(rng.uniform(0.6, 0.8)), 3)
        spacing = (in_plane, in_plane, float(rng.choice(SLICE_SPACINGS)))
    grid = Grid(shape, (spacing[2], spacing[1], spacing[0]))
    geometry = _geometry(grid, rng, oblique)

    chest = build_chest(grid, rng)
    vessels = grow_vessels(chest, grid, rng)
    draw_segments(chest.hu, grid, vessels, HU_BLOOD)

    # Distance into the lung (mm) on a coarse grid, for placing nodules.
    step = np.array([2, 4, 4])
    coarse = chest.lungs[:: step[0], :: step[1], :: step[2]]
    depth_mm = ndimage.distance_transform_edt(coarse, sampling=np.asarray(grid.spacing) * step).astype(
        np.float32
    )

    count = (
        n_nodules if n_nodules is not None else int(rng.choice([0, 1, 2, 3, 4], p=[0.1, 0.3, 0.3, 0.2, 0.1]))
    )
    parenchyma = chest.lungs & (chest.hu < PARENCHYMA_HU)
    labels = np.zeros(shape, dtype=np.uint8)
    taken: list[tuple[NDArray[np.float64], float]] = []
    pending = []
    for _ in range(count):
        nodule_shape = _pick_shape(library, grid.spacing, rng, ggn_fraction)
        placed = _place(nodule_shape, depth_mm, step, chest.lungs, parenchyma, grid, vessels, taken, rng)
        if placed is None:
            continue
        pending.append((nodule_shape, *placed))
    for finding, (nodule_shape, centre, _placement) in enumerate(pending, start=1):
        _paint(chest.hu, labels, nodule_shape, centre, finding, grid, rng)

    hu = ndimage.gaussian_filter(chest.hu, (0.5, 0.7, 0.7))
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(rng.uniform(12.0, 25.0))
    array = np.clip(np.rint(hu), *STORED_HU).astype(np.int16)
    uid = series_uid(seed, index)
    ct = CTVolume(array, geometry, series_uid=uid)

    nodules = [
        _describe(finding, nodule_shape, placement, labels, geometry, grid)
        for finding, (nodule_shape, _, placement) in enumerate(pending, start=1)
    ]
    decoys = _decoys(vessels, chest.lungs, nodules, geometry, grid, rng)
    return PhantomScan(ct, labels, nodules, decoys, chest.lungs)


def _paint(
    hu: NDArray[np.float32],
    labels: NDArray[np.uint8],
    nodule_shape: shapes.NoduleShape,
    centre: NDArray[np.float64],
    finding: int,
    grid: Grid,
    rng: np.random.Generator,
) -> None:
    occupancy = nodule_shape.occupancy
    lo = _box(centre, occupancy.shape)
    hi = lo + occupancy.shape
    clip_lo, clip_hi = np.maximum(lo, 0), np.minimum(hi, grid.shape)
    box = tuple(slice(a, b) for a, b in zip(clip_lo, clip_hi, strict=True))
    inner = tuple(slice(a - o, b - o) for a, b, o in zip(clip_lo, clip_hi, lo, strict=True))
    w = occupancy[inner]
    value = np.full(w.shape, rng.uniform(*HU[nodule_shape.texture]), dtype=np.float32)
    if nodule_shape.texture is Texture.PART_SOLID:
        core = shapes.solid_core(occupancy, grid.spacing)[inner]
        value[core] = rng.uniform(*SOLID_CORE_HU)
    view = hu[box]
    soft = view < 200.0  # bone stays bone where a juxtapleural nodule meets a rib
    view[soft] = (view * (1 - w) + value * w)[soft]
    label_view = labels[box]
    label_view[(w >= 0.5) & soft] = finding


def _describe(
    finding: int,
    nodule_shape: shapes.NoduleShape,
    placement: str,
    labels: NDArray[np.uint8],
    geometry: Geometry,
    grid: Grid,
) -> PhantomNodule:
    voxels = np.argwhere(labels == finding)
    voxel_volume = float(np.prod(grid.spacing))
    volume = len(voxels) * voxel_volume
    centre = voxels.mean(axis=0)
    if labels[tuple(np.round(centre).astype(int))] != finding:  # a concave nodule: take its deepest voxel
        lo, hi = voxels.min(axis=0), voxels.max(axis=0) + 1
        sub = labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] == finding
        depth = ndimage.distance_transform_edt(np.pad(sub, 1), sampling=grid.spacing)[1:-1, 1:-1, 1:-1]
        centre = np.unravel_index(int(np.argmax(depth)), depth.shape) + lo
    xyz = geometry.irc2xyz(np.asarray(centre, dtype=float)[None])[0]
    diameter = equivalent_diameter(volume)
    if nodule_shape.texture is Texture.PART_SOLID:
        core_volume = (
            float(np.count_nonzero(shapes.solid_core(nodule_shape.occupancy, grid.spacing))) * voxel_volume
        )
        solid = (6 * core_volume / math.pi) ** (1 / 3)
    else:
        solid = diameter if nodule_shape.texture is Texture.SOLID else 0.0
    return PhantomNodule(
        finding,
        tuple(round(float(v), 3) for v in xyz),
        round(diameter, 3),
        round(volume, 3),  # type: ignore[arg-type]
        nodule_shape.texture,
        round(nodule_shape.texture_rating, 3),
        round(nodule_shape.malignancy, 3),
        round(solid, 3),
        placement,
        nodule_shape.source,
    )


def _decoys(
    vessels: list,
    lungs: NDArray[np.bool_],
    nodules: list[PhantomNodule],
    geometry: Geometry,
    grid: Grid,
    rng: np.random.Generator,
    n_vessel: int = 40,
    n_lung: int = 12,
) -> NDArray[np.float64]:
    """Nodule-like spots that are not nodules: on vessels (branch points and thick segments), in the lung."""
    points = []
    candidates = [s for s in vessels if s.radius >= 1.0 and s.depth >= 1]
    for _ in range(n_vessel if candidates else 0):
        seg = candidates[int(rng.integers(len(candidates)))]
        t = 1.0 if rng.random() < 0.5 else rng.uniform(0.1, 0.9)  # half of them at branch points
        points.append(grid.to_irc(seg.a + t * (seg.b - seg.a)))
    inside = np.argwhere(lungs[::4, ::8, ::8]) * np.array([4, 8, 8])
    for k in rng.choice(len(inside), size=min(n_lung, len(inside)), replace=False) if len(inside) else []:
        points.append(inside[k].astype(float))
    if not points:
        return np.zeros((0, 3))
    irc = np.clip(np.asarray(points), 0, np.asarray(grid.shape) - 1)
    xyz = geometry.irc2xyz(irc)
    keep = np.ones(len(xyz), dtype=bool)
    for nodule in nodules:  # a decoy on a nodule would be a true positive, not a decoy
        keep &= np.linalg.norm(xyz - np.asarray(nodule.center_xyz), axis=1) > nodule.diameter_mm / 2 + 3.0
    return np.round(xyz[keep], 3)
