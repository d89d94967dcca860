"""lungtk-detect's components, registered through the ``lungtk`` entry-point group like any plugin."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_detectors(registry: Any) -> None:
    registry.add(
        "blob",
        "lungtk.detect.blob:BlobDetector",
        summary="Classical: multi-scale blob filter in the lungs, vessels rejected by shape (no weights).",
    )
