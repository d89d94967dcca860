"""lungtk-cls's components, registered through the ``lungtk`` entry-point group like any plugin."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_classifiers(registry: Any) -> None:
    registry.add(
        "size",
        "lungtk.cls.size:SizeClassifier",
        summary="Classical: malignancy from diameter (fitted on LIDC), texture from density (no weights).",
    )
