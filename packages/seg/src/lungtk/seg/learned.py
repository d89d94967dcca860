"""Learned segmenters as pipeline components: a cube around each candidate at the model's spacing, the
network's probability, and the mask back on the scan's grid in patient geometry.

Per candidate: the model's input cube (``patch`` voxels at ``spacing`` mm, axes along the scan's, centred
on the candidate; zoomed out for a large nodule and, with ``min_voxels``, in for a small one) is sampled
from the scan, windowed as in training, and segmented (with flip test-time augmentation if ``tta``, which
also gives the per-voxel entropy as the mask's uncertainty map); the probability is sampled back onto the
scan voxels the cube covers, and the connected component at the centre above ``threshold`` is the nodule.
``resunet``'s texture head gives the texture probabilities, always from the cube without the zoom-in (the
scale it learnt); a head that reads the nodule's features (``texture_pool="mask"``) reads them under the
network's centre component in that cube (under the probability itself where nothing reaches the
threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage

from lungtk.core import Candidate, Geometry, LungtkError, NoduleMask, RunOptions, Volume
from lungtk.core.errors import missing_model_file
from lungtk.core.labels import TEXTURES
from lungtk.ct_io.components import component_at, nearest_voxel
from lungtk.ct_io.regrid import covering_box, cube_geometry, resample_onto
from lungtk.nn_blocks.inference import tta_predict
from lungtk.train.inputs import InputSpec, run_network
from lungtk.train.modelfile import load_model


@dataclass
class CubeSegmenter:
    """A network that segments a cube around each candidate (``Segmenter`` protocol)."""

    model: torch.nn.Module
    inputs: InputSpec
    device: str = "cpu"
    precision: str = "fp32"
    threshold: float = 0.5
    tta: bool = False
    opening_mm: float = 0.0
    radius_factor: float = 0.0
    min_voxels: float = 0.0

    @classmethod
    def load(cls, options: RunOptions, architecture: str) -> CubeSegmenter:
        if options.weights is None:
            raise missing_model_file(f"segmenter '{architecture}'", architecture)
        threshold = float(options.settings.get("threshold", 0.5))
        if not 0.0 < threshold < 1.0:
            raise LungtkError(
                f"setting {architecture}.threshold={threshold}: use a probability between 0 and 1"
            )
        min_voxels = float(options.settings.get("min_voxels", 0.0))
        if not 0.0 <= min_voxels <= 64.0:
            raise LungtkError(
                f"setting {architecture}.min_voxels={min_voxels}: use a number of voxels from 0 (off) to 64"
            )
        loaded = load_model(
            options.weights, architecture, device=options.device, who=f"segmenter '{architecture}'"
        )
        return cls(
            loaded.model,
            loaded.input_spec(),
            options.device,
            options.precision,
            threshold,
            bool(options.settings.get("tta", False)),
            float(options.settings.get("opening_mm", 0.0)),
            float(options.settings.get("radius_factor", 0.0)),
            min_voxels,
        )

    # -- inference ---------------------------------------------------------------------------------------
    def _logits(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = run_network(self.model, batch, self.device, self.precision)
        return out if isinstance(out, tuple) else (out, None)

    def segment(self, ct: Volume, candidates: Sequence[Candidate]) -> list[NoduleMask]:
        if not candidates:
            return []
        scan = ct.geometry
        array = np.asarray(ct.array)
        cubes = [self._cube_for(c, scan) for c in candidates]
        batch = torch.from_numpy(self.inputs.sample(array, scan, cubes))
        seg, texture = self._logits(batch)
        doubt = None
        if self.tta:  # all 8 flips of the batch (its cubes as channels), flipped back and averaged
            tta = tta_predict(lambda x: self._logits(x[:, None])[0][:, 0], batch[:, 0])
            probs, doubt = tta.probability.numpy(), tta.entropy.numpy()
        else:
            probs = torch.sigmoid(seg)[:, 0].numpy()
        texture_p = self._texture(array, scan, probs, texture, candidates, cubes)
        masks = []
        for i, (candidate, cube) in enumerate(zip(candidates, cubes, strict=True)):
            start, size = covering_box(scan, array.shape, cube, self.inputs.patch_irc)
            geometry = scan.shifted(start)
            if np.any(size < 1):
                masks.append(NoduleMask(np.zeros((1, 1, 1), bool), geometry))
                continue
            on_scan = resample_onto(probs[i], cube, geometry, size, order=1, fill=0.0)
            above = on_scan >= self.threshold
            if self.radius_factor > 0:  # as region growing: nothing beyond this many candidate radii
                above &= _within(
                    geometry, above.shape, candidate, self.radius_factor * candidate.diameter_mm / 2
                )
            centre = geometry.xyz2irc(candidate.center_xyz, continuous=True)
            mask = component_at(above, centre)
            opened, at = _opened(mask, self.opening_mm, scan.spacing_irc), nearest_voxel(centre, mask.shape)
            # a nodule thinner than the ball is kept, not erased; a mask off the centre is still opened
            if opened[at] or (not mask[at] and opened.any()):
                mask = component_at(opened, centre)
            textures = (
                None if texture_p is None else dict(zip(TEXTURES, map(float, texture_p[i]), strict=True))
            )
            uncertainty = (
                None if doubt is None else resample_onto(doubt[i], cube, geometry, size, order=1, fill=0.0)
            )
            masks.append(NoduleMask(mask, geometry, texture=textures, uncertainty=uncertainty))
        return masks

    def _texture(
        self,
        array: NDArray[np.generic],
        scan: Geometry,
        probs: NDArray[np.float32],
        texture: torch.Tensor | None,
        candidates: Sequence[Candidate],
        cubes: Sequence[Geometry],
    ) -> NDArray[np.float32] | None:
        """Texture probabilities per candidate, read as the head learnt them: in each candidate's cube
        without the zoom for small nodules (the network runs again on the cubes that were zoomed in), and,
        for a head that reads the nodule's features (``texture_pool="mask"``), under the network's own
        segmentation there (the component at the centre; the probability where none reaches the
        threshold)."""
        if texture is None:
            return None
        plain = [self._cube_for(c, scan, zoom_in=False) for c in candidates]
        zoomed = np.array([not np.allclose(a.spacing, b.spacing) for a, b in zip(cubes, plain, strict=True)])
        mask_pool = getattr(self.model, "texture_pool", None) == "mask"
        if not mask_pool and not zoomed.any():
            return torch.softmax(texture, dim=1).numpy()
        batch = self.inputs.sample(array, scan, plain)
        if zoomed.any():
            seg, again = self._logits(torch.from_numpy(batch[zoomed]))
            probs, texture = probs.copy(), texture.clone()
            probs[zoomed], texture[torch.from_numpy(zoomed)] = torch.sigmoid(seg)[:, 0].numpy(), again
        if not mask_pool:
            return torch.softmax(texture, dim=1).numpy()
        nodules = np.stack(
            [
                component_at(p >= self.threshold, cube.xyz2irc(c.center_xyz, continuous=True))
                for p, c, cube in zip(probs, candidates, plain, strict=True)
            ]
        ).astype(np.float32)
        missed = ~nodules.any(axis=(1, 2, 3))
        nodules[missed] = probs[missed]
        both = np.concatenate([batch, nodules[:, None]], axis=1)  # image, nodule as channels
        texture = run_network(
            lambda x: self.model.texture_logits(x[:, :1], x[:, 1:]), both, self.device, self.precision
        )
        return torch.softmax(texture, dim=1).numpy()

    def _cube_for(self, candidate: Candidate, scan: Geometry, *, zoom_in: bool = True) -> Geometry:
        """The network's input cube around a candidate: its patch at its spacing; for a nodule that patch
        cannot hold with ``CONTEXT_MM`` of lung around it, the same patch at a coarser spacing; for a
        nodule narrower than ``min_voxels`` voxels of the patch, the same patch at a finer one.
        (Zooming out, not sliding windows: a window inside a large solid nodule sees only soft tissue,
        which in training was the heart or the chest wall, and the network leaves a hole there. Zooming
        in: the network cuts the edge of a nodule a few voxels wide short, and a 5-8 mm nodule is 6-10
        voxels wide at 0.8 mm.)"""
        spacing = self.inputs.spacing_for(scan)
        diameter = max(float(candidate.diameter_mm), 0.0)
        needed_mm = WIDE_FACTOR * diameter + 2 * CONTEXT_MM
        field_mm = float(np.min(np.asarray(self.inputs.patch_irc)[::-1] * spacing))
        zoom = min(max(1.0, needed_mm / field_mm), MAX_ZOOM)
        if zoom == 1.0 and zoom_in and self.min_voxels > 0 and diameter > 0:  # min_voxels on every axis
            zoom = min(max(diameter / (self.min_voxels * float(np.max(spacing))), MIN_ZOOM), 1.0)
        return cube_geometry(candidate.center_xyz, self.inputs.patch_irc, spacing * zoom, scan)


# A candidate's cube is zoomed out when its diameter times WIDE_FACTOR plus CONTEXT_MM on each side does
# not fit the patch: irregular nodules reach past their equivalent diameter, and the network needs lung
# around a nodule to see its edge.
WIDE_FACTOR = 1.25
CONTEXT_MM = 4.0
MAX_ZOOM = 3.0  # a wild diameter estimate (a detector's, a table's) must not make the cube the whole scan
MIN_ZOOM = 0.5  # ... nor a tiny one a cube of a few millimetres


def _within(geometry, shape: tuple[int, ...], candidate: Candidate, radius_mm: float) -> NDArray[np.bool_]:
    """The voxels of a crop (``geometry``, ``shape``) within ``radius_mm`` of the candidate's centre."""
    irc = np.indices(shape).reshape(3, -1).T
    distance = np.linalg.norm(geometry.irc2xyz(irc) - np.asarray(candidate.center_xyz), axis=1)
    return (distance <= radius_mm).reshape(shape)


def _opened(mask: NDArray[np.bool_], radius_mm: float, spacing_irc: NDArray[np.float64]) -> NDArray[np.bool_]:
    """A morphological opening by a ball of ``radius_mm``: cuts threads (vessels) thinner than the ball
    that join a nodule to its neighbours; 0: none."""
    if radius_mm <= 0:
        return mask
    half = np.maximum(np.floor(radius_mm / spacing_irc).astype(int), 0)
    grid = np.indices(2 * half + 1).reshape(3, -1).T - half
    ball = (np.linalg.norm(grid * spacing_irc, axis=1) <= radius_mm).reshape(tuple(2 * half + 1))
    return ndimage.binary_opening(mask, structure=ball)


def resunet(options: RunOptions) -> CubeSegmenter:
    return CubeSegmenter.load(options, "resunet")


def unet3d_res(options: RunOptions) -> CubeSegmenter:
    return CubeSegmenter.load(options, "unet3d-res")


def dilated_unet(options: RunOptions) -> CubeSegmenter:
    return CubeSegmenter.load(options, "dilated-unet")
