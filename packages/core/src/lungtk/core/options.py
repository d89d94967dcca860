"""What every component factory receives: the typed run options and the component's own settings.

A component declares its settings when it registers, as ``name -> default`` (the default's type is the
setting's type)::

    registry.add("resunet", "lungtk.seg.resunet:create", settings={"overlap": 0.5, "tta": False},
                 default_weights="lungtk.seg:weights/resunet.safetensors")

and its factory is called with one :class:`RunOptions` whose ``settings`` hold every declared setting,
typed, with the user's ``--set resunet.overlap=0.25`` applied. A setting the component did not declare
is an error with a suggestion, never silently ignored.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from lungtk.core.errors import LungtkError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")
SettingValue = bool | int | float | str

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class RunOptions:
    """How a component runs: where, at what precision, how many crops per batch, with which weights and
    with which of its declared settings.

    ``device`` is already resolved (``cpu``, ``cuda``, ``cuda:N``); ``weights`` is the model file to load
    (the user's ``--weights`` or the component's shipped default), ``None`` for components without one.
    """

    device: str = "cpu"
    precision: Precision = "fp32"
    batch_size: int = 16
    weights: Path | None = None
    settings: Mapping[str, SettingValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise LungtkError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise LungtkError(f"batch size {self.batch_size!r}: use a whole number of 1 or more")
        if self.weights is not None:
            object.__setattr__(self, "weights", Path(self.weights))
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def with_settings(self, settings: Mapping[str, SettingValue]) -> RunOptions:
        return replace(self, settings=settings)


def coerce_setting(owner: str, key: str, value: Any, default: SettingValue) -> SettingValue:
    """``value`` (a string from the command line, or a Python value) as the type of ``default``."""
    where = f"setting {owner}.{key}={value!r}"
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise LungtkError(f"{where}: expected true or false")
    if kind in (int, float):
        if isinstance(value, bool):
            raise LungtkError(f"{where}: expected a number")
        try:
            number = kind(value) if not (kind is int and isinstance(value, str)) else int(value.strip(), 10)
        except (TypeError, ValueError):
            raise LungtkError(
                f"{where}: expected {'a whole number' if kind is int else 'a number'}"
            ) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise LungtkError(f"{where}: expected a finite number")
        if kind is int and isinstance(value, float) and value != number:
            raise LungtkError(f"{where}: expected a whole number")
        return number
    return str(value)


def resolve_settings(
    owner: str, declared: Mapping[str, SettingValue], given: Mapping[str, Any]
) -> dict[str, SettingValue]:
    """The declared defaults updated with ``given``; unknown keys are an error that suggests a known one."""
    unknown = [key for key in given if key not in declared]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(declared), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(sorted(declared)) if declared else "none"
        raise LungtkError(f"'{owner}' has no setting '{key}'{hint} (its settings: {known})")
    return {
        key: coerce_setting(owner, key, given[key], default) if key in given else default
        for key, default in declared.items()
    }


def parse_assignments(items: Iterable[str], *, option: str = "--set") -> dict[str, dict[str, str]]:
    """``["resunet.overlap=0.25", "blob.top=50"]`` -> ``{"resunet": {"overlap": "0.25"}, "blob": {...}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        owner, dot, key = target.strip().rpartition(".")
        if not sep or not dot or not owner or not key:
            raise LungtkError(f"{option} {item!r}: write it as NAME.KEY=VALUE, e.g. resunet.overlap=0.25")
        parsed.setdefault(owner, {})[key] = value.strip()
    return parsed


def parse_weights(items: Iterable[str]) -> dict[str, Path]:
    """``["resunet=run/model.safetensors"]`` -> ``{"resunet": Path(...)}``; the file must exist."""
    weights: dict[str, Path] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise LungtkError(
                f"--weights {item!r}: write it as NAME=FILE, e.g. resunet=run/model.safetensors"
            )
        path = Path(value.strip()).expanduser()
        if not path.is_file():
            raise LungtkError(f"--weights {item}: {path} is not a file")
        weights[name.strip()] = path
    return weights
