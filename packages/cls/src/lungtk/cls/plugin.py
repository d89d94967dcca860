"""lungtk-cls's components, registered through the ``lungtk`` entry-point group like any plugin."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_classifiers(registry: Any) -> None:
    registry.add(
        "size",
        "lungtk.cls.size:SizeClassifier.from_options",
        summary="Classical: malignancy from diameter (fitted on LIDC), texture from density (no weights).",
        cpu_only=True,
        settings={"min_solid_part_mm": 2.0, "solid_above": 0.5},
    )
