"""The pluggy hook specification of lungtk.

Plugins are modules exposed under the ``lungtk`` entry-point group. They implement any of the hooks below
with the :data:`hookimpl` marker::

    from lungtk.core import hookimpl

    @hookimpl
    def lungtk_register_detectors(registry):
        registry.add("brightest", "my_plugin.detector:create", summary="...", settings={"top": 10})

A factory is called with one ``RunOptions`` (device, precision, batch size, weights file and the declared
settings, typed and validated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from lungtk.core.registry import Registrar

PROJECT = "lungtk"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lungtk_register_detectors(registry: Registrar) -> None:
    """Add detectors (``Detector`` protocol) with ``registry.add(name, factory, summary=...)``."""


@hookspec
def lungtk_register_segmenters(registry: Registrar) -> None:
    """Add segmenters (``Segmenter`` protocol) with ``registry.add(name, factory, summary=...)``."""


@hookspec
def lungtk_register_classifiers(registry: Registrar) -> None:
    """Add classifiers (``Classifier`` protocol) with ``registry.add(name, factory, summary=...)``."""


@hookspec
def lungtk_register_tasks(registry: Registrar) -> None:
    """Add training tasks with ``registry.add(name, factory, summary=..., settings={...})``.

    A task's factory receives a ``RunOptions`` whose settings are the task's configuration (``lungtk train
    TASK --set key=value``); what it returns is defined by ``lungtk.train``.
    """


@hookspec
def lungtk_register_commands(app: Any) -> None:
    """Add Typer sub-apps or commands to the ``lungtk`` command line (``app.add_typer(...)``).

    Import Typer and anything heavy inside the hook or inside the commands, so that ``lungtk --help``
    stays fast.
    """


@hookspec(firstresult=True)
def lungtk_ct_reader(path: Path) -> Any | None:
    """Return a callable ``reader(path) -> volume`` if this plugin can read ``path``, else ``None``.

    ``lungtk.ct_io.read_ct`` asks this hook before its built-in readers (through
    ``get_plugins().reader_for(path)``), so a plugin can add a format or take one over. Answer from the
    path alone (its suffix, a magic number): this runs on every read. The first plugin that answers wins;
    plugins loaded later are asked first (pluggy's LIFO order; third-party plugins load after the
    first-party ones). The volume must have ``array`` (index, row, col), ``geometry`` (a
    ``lungtk.core.Geometry``) and ``series_uid``; ``read_ct`` makes it a ``CTVolume``. A reader that
    raises, or returns anything else, is a ``LungtkError`` naming the plugin (a ``LungtkError`` it raises
    itself is shown as it is). To post-process a built-in format, read it with
    ``read_ct(path, use_plugins=False)``.
    """
