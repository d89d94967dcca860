"""Network builders by name: what a model file's ``architecture`` may name.

Installed packages declare theirs in the ``lungtk.architectures`` entry-point group (``name =
"module:builder"``); code may also call :func:`register_architecture`. A model file is rebuilt only by a
builder found here, with the keyword arguments its metadata holds, never by an import path the file names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from lungtk.core import LungtkError

GROUP = "lungtk.architectures"
_LOCAL: dict[str, Callable[..., Any]] = {}


def register_architecture(name: str, builder: Callable[..., Any]) -> None:
    """Make ``builder(**args)`` available as architecture ``name`` in this process."""
    _LOCAL[name] = builder


@cache
def _installed() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def architecture_names() -> list[str]:
    return sorted(set(_installed()) | set(_LOCAL))


def get_architecture(name: str) -> Callable[..., Any]:
    if name in _LOCAL:
        return _LOCAL[name]
    ep = _installed().get(name)
    if ep is None:
        known = architecture_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise LungtkError(
            f"architecture '{name}' is not installed{hint} (installed: {', '.join(known) or 'none'}); "
            f"install the package that provides it"
        )
    try:
        return ep.load()
    except Exception as exc:
        dist = ep.dist.name if ep.dist is not None else "?"
        raise LungtkError(f"architecture '{name}' from {dist} cannot be loaded: {exc}") from exc


def build_architecture(name: str, args: Mapping[str, Any]) -> Any:
    """``builder(**args)``; arguments the builder does not take are an error naming the architecture."""
    builder = get_architecture(name)
    try:
        return builder(**dict(args))
    except TypeError as exc:
        raise LungtkError(
            f"architecture '{name}': the arguments {dict(args)} do not fit it ({exc})"
        ) from None
