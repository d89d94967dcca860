"""lungtk-seg's components, registered through the ``lungtk`` entry-point group like any plugin."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_segmenters(registry: Any) -> None:
    registry.add(
        "regiongrow",
        "lungtk.seg.regiongrow:RegionGrowSegmenter.from_options",
        summary="Classical: region growing from the centre, adaptive HU threshold, radius limit (no weights).",
        cpu_only=True,
        settings={"fraction": 0.5, "min_contrast_hu": 100.0, "radius_factor": 1.6, "max_radius_mm": 25.0},
    )
