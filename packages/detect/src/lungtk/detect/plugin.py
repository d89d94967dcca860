"""lungtk-detect's components, registered through the ``lungtk`` entry-point group like any plugin."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_detectors(registry: Any) -> None:
    registry.add(
        "blob",
        "lungtk.detect.blob:BlobDetector.from_options",
        summary="Classical: multi-scale blob filter in the lungs, vessels rejected by shape (no weights).",
        cpu_only=True,
        settings={
            "min_diameter_mm": 3.5,
            "max_diameter_mm": 32.0,
            "scales": 7,
            "min_contrast_hu": 40.0,
            "max_candidates": 100,
        },
    )
