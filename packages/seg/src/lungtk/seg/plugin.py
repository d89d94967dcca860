"""lungtk-seg's components and training tasks, registered through the ``lungtk`` entry-point group like
any plugin. Nothing heavy is imported here: factories are import paths, settings plain values."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl

WEIGHTS = "lungtk.seg:weights/{}.safetensors"
CUBE_SETTINGS = {"threshold": 0.5, "tta": False, "opening_mm": 0.0, "radius_factor": 0.0, "min_voxels": 0.0}
# resunet's opening (cuts vessels joined to a nodule) was chosen on phantoms of seed 8000, which neither
# training (seed 500) nor the README's evaluation (seed 9100) uses: 0 / 0.8 / 1.2 / 1.6 / 2.0 / 2.4 mm gave
# a mean Dice of 0.715 / 0.716 / 0.743 / 0.748 / 0.630 / 0.633 there. Its radius limit is region growing's
# rule (nothing beyond 1.6 candidate radii; on seed 8000 1.2 / 1.6 / 2.0 gave 0.837 / 0.811 / 0.786):
# masks leaked along vessels on small nodules (Dice 0.1-0.3 on several 5-7 mm nodules). Its 8-flip TTA
# (`tta`; mean probability and the uncertainty map) lifted the mean Dice on the calibration phantoms of
# seeds 8000 / 8100 / 8200 from 0.856 / 0.730 / 0.780 to 0.865 / 0.745 / 0.789, but the pipeline segments
# every candidate (up to 100 a scan): 8 forwards per cube took a scan from 3.0 to 17.0 s on 2 CPU cores,
# so it stays off by default. Its zoom for small nodules (`min_voxels`: a nodule narrower than that many
# voxels of the patch is segmented in the same patch at a finer spacing, at most 2x) took the mean Dice on
# those calibration phantoms from 0.856 / 0.730 / 0.780 (off) to 0.871 / 0.805 / 0.814 (12 voxels; 14
# voxels: 0.857 / 0.815 / 0.822); nodules of 5-8 mm from 0.719 to 0.791.
RESUNET_SETTINGS = {**CUBE_SETTINGS, "opening_mm": 1.6, "radius_factor": 1.6, "min_voxels": 12.0}
# The same zoom took unet3d-res from 0.628 to 0.717 on those 85 calibration nodules (5-8 mm: 0.528 to
# 0.690), and dilated-unet (0.7 x 0.7 x 1.0 mm, trained on subsolid-rich phantoms) from 0.659 down to 0.633.
UNET3D_RES_SETTINGS = {**CUBE_SETTINGS, "min_voxels": 12.0}
SLICE_SETTINGS = {"threshold": 0.5, "erosion": 1, "connectivity": 6, "max_candidates": 100, "score": "peak"}


@hookimpl
def lungtk_register_segmenters(registry: Any) -> None:
    registry.add(
        "regiongrow",
        "lungtk.seg.regiongrow:RegionGrowSegmenter.from_options",
        summary="Classical: region growing from the centre, adaptive HU threshold, radius limit (no weights).",
        cpu_only=True,
        takes_weights=False,
        settings={"fraction": 0.5, "min_contrast_hu": 100.0, "radius_factor": 1.6, "max_radius_mm": 25.0},
    )
    registry.add(
        "resunet",
        "lungtk.seg.learned:resunet",
        summary="Seed 000: residual 3D U-Net (GroupNorm, ELU) with a texture head; a cube per candidate.",
        default_weights=WEIGHTS.format("resunet"),
        settings=RESUNET_SETTINGS,
    )
    registry.add(
        "unet3d-res",
        "lungtk.seg.learned:unet3d_res",
        summary="Seed 002: 3D U-Net with residual units (top-K BCE + Dice); a cube per candidate.",
        default_weights=WEIGHTS.format("unet3d-res"),
        settings=UNET3D_RES_SETTINGS,
    )
    registry.add(
        "dilated-unet",
        "lungtk.seg.learned:dilated_unet",
        summary="Seed 004: dilated 3D U-Net (15 convolutions); a cube per candidate (trained on subsolid-rich "
        "phantoms, the ggn-pathology cascade's mask).",
        default_weights=WEIGHTS.format("dilated-unet"),
        settings=CUBE_SETTINGS,
    )


@hookimpl
def lungtk_register_detectors(registry: Any) -> None:
    registry.add(
        "unet25d",
        "lungtk.seg.slice_detector:unet25d",
        summary="Seed 001: 2.5D U-Net over every slice, grouped into candidates (threshold, erosion, "
        "components, HU-weighted centres).",
        default_weights=WEIGHTS.format("unet25d"),
        settings=SLICE_SETTINGS,
    )


@hookimpl
def lungtk_register_tasks(registry: Any) -> None:
    from lungtk.seg.tasks import DILATED_UNET, RESUNET, UNET3D_RES, UNET25D

    registry.add(
        "resunet", "lungtk.seg.tasks:resunet", summary="Seed 000 segmentation + texture.", settings=RESUNET
    )
    registry.add(
        "unet25d", "lungtk.seg.tasks:unet25d", summary="Seed 001 2.5D candidate finder.", settings=UNET25D
    )
    registry.add(
        "unet3d-res",
        "lungtk.seg.tasks:unet3d_res",
        summary="Seed 002 residual-unit 3D U-Net.",
        settings=UNET3D_RES,
    )
    registry.add(
        "dilated-unet",
        "lungtk.seg.tasks:dilated_unet",
        summary="Seed 004 dilated 3D U-Net.",
        settings=DILATED_UNET,
    )
