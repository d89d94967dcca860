"""lungtk-train's own task, registered through the ``lungtk`` entry-point group like any plug-in's."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl
from lungtk.train.unet_tiny import SETTINGS, SUMMARY


@hookimpl
def lungtk_register_tasks(registry: Any) -> None:
    registry.add("unet-tiny", "lungtk.train.unet_tiny:create", summary=SUMMARY, settings=SETTINGS)
