"""NoduleNet as a pipeline component: a detector over whole scans and a segmenter from its mask head.

**detect(ct)**: the scan is resampled to the model's spacing (what it trained at; linear), cut into
overlapping tiles of ``tile`` voxels (:class:`~lungtk.detect.tiles.TileGrid`; an axis shorter than a tile
gets a smaller one, a multiple of 16, padded with air), each tile windowed as in training and run through
the network (``tile_batch`` tiles at a time; AMP on CUDA at bf16 / fp16). Each tile keeps the detections it
owns (nearest tile centre), with their mask-head masks when ``masks`` is on; a global 3D NMS (``nms_iou``)
merges the tiles and the ``max_candidates`` best remain. Centres, diameters (the cube's side) and boxes go
back to patient millimetres through the resampled scan's geometry. Memory: the scan at the model's
spacing (float32) plus one batch of tiles' activations. With ``tta`` the scan is also run flipped along
each axis and the four passes' detections are fused (:mod:`lungtk.detect.tta`): four times the time.

**segment(ct, candidates)**: the masks of this component's own last detections on the same scan come from
that pass (no second run); any other candidate (another detector's, a table's) gets the mask head on a
cube around it, its region the candidate's cube. The probabilities are sampled onto the scan's grid and the
connected component at the centre above ``mask_threshold`` is the mask.

**One component, two roles**: ``--detector nodulenet --segmenter nodulenet`` builds the component once
for each role (the registry holds one spec per kind); both factories return the same instance for the
same model file, device and settings (a process-wide weak table), so the segmenter sees the detector's
masks.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from lungtk.core import Candidate, Geometry, LungtkError, NoduleMask, RunOptions, Volume
from lungtk.core.errors import missing_model_file
from lungtk.core.labels import AIR_HU
from lungtk.ct_io.components import component_at
from lungtk.ct_io.crops import crop_array
from lungtk.ct_io.preprocess import normalize, resample
from lungtk.ct_io.regrid import covering_box, cube_geometry, resample_onto
from lungtk.ct_io.volume import CTVolume
from lungtk.detect.boxes import nms
from lungtk.detect.feature_net import DIVISOR
from lungtk.detect.tiles import TileGrid
from lungtk.detect.tta import FLIPS, fuse_passes, unflip_cubes, unflip_window

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
VARIANT_ATTENTION = {"nodulenet": None, "nodulenet-cbam": "cbam", "nodulenet-qam": "qam"}
CONTEXT = 16  # voxels of context around a candidate's cube when segmenting it alone


def _ceil(value: float, multiple: int = DIVISOR) -> int:
    return int(np.ceil(value / multiple) * multiple)


@dataclass
class _Found:
    """A detection kept for ``segment``: its centre (patient mm), its mask window's grid and values."""

    centre_xyz: NDArray[np.float64]
    window: Geometry
    probability: NDArray[np.float16]


@dataclass
class NoduleNetDetector:
    """``Detector`` and ``Segmenter`` protocols; ``model`` has NoduleNet's ``detect`` and ``segment``."""

    model: Any
    spacing_xyz: tuple[float, float, float]
    window: str
    tile: int = 128
    overlap: int = 32
    tile_batch: int = 1
    rpn_threshold: float = 0.5
    nms_iou: float = 0.1
    max_candidates: int = 100
    masks: bool = True
    mask_threshold: float = 0.5
    tta: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    source: str = "nodulenet"
    _last: tuple[tuple[Any, ...], list[_Found]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        name = self.source
        if self.tile < 2 * DIVISOR or self.tile % DIVISOR:
            raise LungtkError(f"setting {name}.tile={self.tile}: use a multiple of {DIVISOR}, 32 or more")
        if not 0 <= self.overlap < self.tile:
            raise LungtkError(
                f"setting {name}.overlap={self.overlap}: use 0 or more voxels, fewer than the tile ({self.tile})"
            )
        if self.tile_batch < 1:
            raise LungtkError(f"setting {name}.tile_batch={self.tile_batch}: use 1 or more (0: automatic)")
        for key in ("rpn_threshold", "nms_iou", "mask_threshold"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise LungtkError(f"setting {name}.{key}={getattr(self, key)}: use a value between 0 and 1")
        if self.max_candidates < 1:
            raise LungtkError(f"setting {name}.max_candidates={self.max_candidates}: use 1 or more")

    @classmethod
    def load(cls, options: RunOptions, name: str = "nodulenet") -> NoduleNetDetector:
        from lungtk.train.modelfile import load_model

        if options.weights is None:
            raise missing_model_file(f"detector '{name}'", name)
        s = options.settings
        loaded = load_model(options.weights, "nodulenet", device=options.device, who=f"'{name}'")
        wanted = VARIANT_ATTENTION.get(name)
        attention = str(loaded.header.arch_args.get("attention", "none"))
        if wanted is not None and attention != wanted:
            raise LungtkError(
                f"'{name}' needs a NoduleNet trained with attention={wanted}; {options.weights} has "
                f"attention={attention} (use the component 'nodulenet' for it)"
            )
        spec = loaded.input_spec()
        if spec.spacing_xyz is None:
            raise LungtkError(f"{options.weights}: its preprocessing gives no spacing; NoduleNet needs one")
        tile_batch = int(s["tile_batch"]) or (4 if options.device.startswith("cuda") else 1)
        return cls(
            loaded.model,
            spec.spacing_xyz,
            spec.window,
            tile=int(s["tile"]),
            overlap=int(s["overlap"]),
            tile_batch=tile_batch,
            rpn_threshold=float(s["rpn_threshold"]),
            nms_iou=float(s["nms_iou"]),
            max_candidates=int(s["max_candidates"]),
            masks=bool(s["masks"]),
            mask_threshold=float(s["mask_threshold"]),
            tta=bool(s["tta"]),
            device=options.device,
            precision=options.precision,
            source=name,
        )

    # -- running the network ---------------------------------------------------------------------------
    def _autocast(self) -> Any:
        dtype = _AUTOCAST.get(self.precision) if self.device.startswith("cuda") else None
        return torch.autocast("cuda", dtype=dtype, enabled=dtype is not None)

    def _input(self, hu: NDArray[np.floating]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(normalize(hu, self.window), dtype=np.float32))

    # -- Detector ----------------------------------------------------------------------------------------
    def detect(self, ct: Volume) -> list[Candidate]:
        volume = (
            ct if isinstance(ct, CTVolume) else CTVolume(np.asarray(ct.array), ct.geometry, ct.series_uid)
        )
        at_model = resample(volume, self.spacing_xyz)
        hu = np.asarray(at_model.array)
        passes = [
            self._pass(np.flip(hu, flip) if flip else hu, flip) for flip in (FLIPS if self.tta else ((),))
        ]
        found = [f for _, _, pass_found in passes for f in pass_found]
        if self.tta:
            boxes, scores, heads = fuse_passes([p[0] for p in passes], [p[1] for p in passes], self.nms_iou)
            offsets = np.cumsum([0] + [len(p[0]) for p in passes])
            found = [found[offsets[p] + i] for p, i in heads]
        else:
            boxes, scores = passes[0][0], passes[0][1]
        keep = nms(boxes, scores, self.nms_iou, self.max_candidates).tolist() if len(boxes) else []
        geometry = at_model.geometry
        candidates, cached = [], []
        for i in keep:
            candidates.append(self._candidate(geometry, boxes[i].tolist(), float(scores[i])))
            centre = np.asarray(candidates[-1].center_xyz)
            if found[i] is not None:
                start, prob = found[i]
                cached.append(_Found(centre, geometry.shifted(start), prob.cpu().numpy().astype(np.float16)))
        self._last = (_scan_key(ct), cached)
        return candidates

    def _pass(
        self, hu: NDArray[Any], flip: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[Any, torch.Tensor] | None]]:
        """One pass over the scan at the model's spacing (flipped along ``flip``): its detections after
        NMS, as cubes in the unflipped scan's voxels, their scores and their mask windows."""
        tile = tuple(min(self.tile, _ceil(s)) for s in hu.shape)
        grid = TileGrid.cover(hu.shape, tile, self.overlap)
        boxes, scores, found = [], [], []
        tiles = list(grid)
        for first in range(0, len(tiles), self.tile_batch):
            chunk = tiles[first : first + self.tile_batch]
            x = torch.stack([self._input(crop_array(hu, start, tile, AIR_HU)) for _, start in chunk])[:, None]

            def owned(patch: int, cubes: torch.Tensor, chunk: Any = chunk) -> torch.Tensor:
                index, start = chunk[patch]
                centres = cubes[:, :3].float().cpu().numpy() + np.asarray(start)
                mine = np.all(grid.owner(centres) == np.asarray(index), axis=1)
                return torch.from_numpy(mine).to(cubes.device)

            with torch.inference_mode(), self._autocast():
                detections = self.model.detect(
                    x.to(self.device, non_blocking=True),
                    threshold=self.rpn_threshold,
                    nms_iou=self.nms_iou,
                    max_keep=self.max_candidates,
                    with_masks=self.masks,
                    keep=owned,
                )
            for (_, start), det in zip(chunk, detections, strict=True):
                offset = torch.as_tensor([*start, 0], dtype=torch.float32)
                boxes.append(det.boxes.float().cpu() + offset)
                scores.append(det.scores.float().cpu())
                for piece in det.masks or [None] * len(det.boxes):
                    found.append(None if piece is None else (np.asarray(piece[0][:3]) + start, piece[1]))
        if not boxes or not sum(len(b) for b in boxes):
            return torch.zeros(0, 4), torch.zeros(0), []
        all_boxes, all_scores = torch.cat(boxes), torch.cat(scores)
        keep = nms(all_boxes, all_scores, self.nms_iou, self.max_candidates).tolist()
        kept = [found[i] for i in keep]
        if flip:
            kept = [
                None
                if f is None
                else (np.asarray(unflip_window(f[0], f[1].shape, flip, hu.shape)), f[1].flip(flip))
                for f in kept
            ]
        return unflip_cubes(all_boxes[keep], flip, hu.shape), all_scores[keep], kept

    def _candidate(self, geometry: Geometry, cube: list[float], score: float) -> Candidate:
        """A cube (z, y, x, side) in the resampled scan's voxels as a Candidate in patient mm."""
        centre, side = np.asarray(cube[:3]), cube[3]
        corners = centre + (np.indices((2, 2, 2)).reshape(3, -1).T - 0.5) * side
        xyz = geometry.irc2xyz(corners)
        return Candidate(
            tuple(float(v) for v in geometry.irc2xyz(centre)),  # type: ignore[arg-type]
            side * float(np.mean(self.spacing_xyz)),
            min(max(score, 0.0), 1.0),
            box_mm=(*map(float, xyz.min(axis=0)), *map(float, xyz.max(axis=0))),  # type: ignore[arg-type]
            source=self.source,
        )

    # -- Segmenter ---------------------------------------------------------------------------------------
    def segment(self, ct: Volume, candidates: Sequence[Candidate]) -> list[NoduleMask]:
        if not candidates:
            return []
        scan, array = ct.geometry, np.asarray(ct.array)
        known = self._last[1] if self._last is not None and self._last[0] == _scan_key(ct) else []
        pieces: list[tuple[Geometry, NDArray[np.floating]] | None] = []
        for c in candidates:
            match = next((f for f in known if np.allclose(f.centre_xyz, c.center_xyz, atol=1e-4)), None)
            pieces.append(None if match is None else (match.window, match.probability))
        missing = [i for i, p in enumerate(pieces) if p is None]
        for i, piece in zip(
            missing, self._segment_alone(array, scan, [candidates[i] for i in missing]), strict=True
        ):
            pieces[i] = piece
        out = []
        for c, piece in zip(candidates, pieces, strict=True):
            assert piece is not None
            out.append(self._on_scan(scan, array.shape, piece[0], piece[1], c.center_xyz))
        return out

    def _segment_alone(
        self, array: NDArray[Any], scan: Geometry, candidates: Sequence[Candidate]
    ) -> list[tuple[Geometry, NDArray[np.floating]]]:
        """The mask head on a cube around each candidate (its region: the candidate's cube)."""
        spacing = float(np.mean(self.spacing_xyz))
        out = []
        for c in candidates:
            side_vox = max(c.diameter_mm / spacing, 1.0)
            size = min(self.tile, _ceil(side_vox + 2 * CONTEXT))
            cube = cube_geometry(c.center_xyz, (size,) * 3, self.spacing_xyz, scan)
            hu = resample_onto(array, scan, cube, (size,) * 3, order=1, fill=AIR_HU)
            centre = (size - 1) / 2
            roi = torch.tensor([[0.0, centre, centre, centre, min(side_vox, size)]])
            with torch.inference_mode(), self._autocast():
                window, prob = self.model.segment(
                    self._input(hu)[None, None].to(self.device), roi.to(self.device)
                )[0]
            out.append((cube.shifted(window[:3]), prob.float().cpu().numpy()))
        return out

    def _on_scan(
        self,
        scan: Geometry,
        shape: tuple[int, ...],
        window: Geometry,
        prob: NDArray[np.floating],
        centre_xyz: Any,
    ) -> NoduleMask:
        start, size = covering_box(scan, shape, window, prob.shape)
        geometry = scan.shifted(start)
        if np.any(size < 1):
            return NoduleMask(np.zeros((1, 1, 1), bool), geometry)
        on_scan = resample_onto(prob.astype(np.float32), window, geometry, size, order=1, fill=0.0)
        return NoduleMask(
            component_at(on_scan >= self.mask_threshold, geometry.xyz2irc(centre_xyz, continuous=True)),
            geometry,
        )


def _scan_key(ct: Volume) -> tuple[Any, ...]:
    g = ct.geometry
    return (
        ct.series_uid,
        tuple(np.shape(ct.array)),
        *g.origin.tolist(),
        *g.spacing.tolist(),
        *g.direction.ravel().tolist(),
    )


# -- factories: one instance per model file, device and settings, whichever role asks ------------------------
_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], NoduleNetDetector] = weakref.WeakValueDictionary()


def _shared(options: RunOptions, name: str) -> NoduleNetDetector:
    weights = None if options.weights is None else str(options.weights.resolve())
    key = (name, weights, options.device, options.precision, tuple(sorted(options.settings.items())))
    found = _SHARED.get(key)
    if found is None:
        found = NoduleNetDetector.load(options, name)
        _SHARED[key] = found
    return found


def nodulenet(options: RunOptions) -> NoduleNetDetector:
    return _shared(options, "nodulenet")


def nodulenet_cbam(options: RunOptions) -> NoduleNetDetector:
    return _shared(options, "nodulenet-cbam")


def nodulenet_qam(options: RunOptions) -> NoduleNetDetector:
    return _shared(options, "nodulenet-qam")
