"""Hook implementations: what this plugin adds to lungtk.

Keep this module light: it is imported whenever ``lungtk`` starts. Register factories as
``"module:attr"`` strings so nothing heavy is imported until a component is used.
"""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl


@hookimpl
def lungtk_register_detectors(registry: Any) -> None:
    registry.add(
        "example-brightest",
        "lungtk_example_plugin.detector:create",
        summary="Example plugin: the brightest compact blobs (Difference of Gaussians).",
        # What a user may change with `--set example-brightest.top=20`; the defaults give the types.
        settings={"diameter_mm": 8.0, "top": 10, "min_hu": -400.0},
    )


@hookimpl
def lungtk_register_commands(app: Any) -> None:
    from lungtk_example_plugin.commands import app as example_app

    app.add_typer(example_app, name="example")
