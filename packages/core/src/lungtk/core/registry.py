"""A registry of lazily built components (detectors, segmenters, classifiers) and training tasks.

A plugin registers a *factory*: either a callable or an import path ``"package.module:attr"``. Nothing is
imported until a component is built, so listing components costs no torch import. A factory is called
with one :class:`~lungtk.core.options.RunOptions`; the settings it may receive are declared at
registration, and its shipped weights are named as ``"package:relative/path"`` (package data).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.resources
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from lungtk.core.errors import DuplicateComponentError, LungtkError, UnknownComponentError
from lungtk.core.options import RunOptions, SettingValue, resolve_settings

Kind = Literal["detector", "segmenter", "classifier", "task"]
KINDS: tuple[Kind, ...] = ("detector", "segmenter", "classifier", "task")
PIPELINE_KINDS: tuple[Kind, ...] = ("detector", "segmenter", "classifier")

Factory = Callable[..., Any] | str


@dataclass(frozen=True)
class ComponentSpec:
    """What a plugin registered: a named, lazily imported factory and where it came from."""

    name: str
    kind: Kind
    factory: Factory
    summary: str = ""
    distribution: str = "?"
    version: str = "?"
    default_weights: str | None = None
    settings: Mapping[str, SettingValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in self.settings.items():
            if not isinstance(value, bool | int | float | str):
                raise ValueError(
                    f"{self.kind} '{self.name}': setting {key!r} needs a bool/int/float/str default"
                )
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if self.default_weights is not None and ":" not in self.default_weights:
            raise ValueError(
                f"{self.kind} '{self.name}': default_weights must be 'package:relative/path', "
                f"got {self.default_weights!r}"
            )

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}"

    def weights_path(self) -> Path | None:
        """Where the shipped weights of this component are (package data), or ``None`` if it has none.

        The path is returned whether or not the file exists; :meth:`create` checks that.
        """
        if self.default_weights is None:
            return None
        package, _, relative = self.default_weights.partition(":")
        try:
            root = importlib.resources.files(package)
        except (ImportError, TypeError):
            return Path(f"<{package} is not importable>") / relative
        return Path(str(root.joinpath(*relative.split("/"))))

    def load(self) -> Callable[..., Any]:
        """Import and return the factory."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise LungtkError(
                f"{self.kind} '{self.name}' from {self.provider} cannot be loaded from "
                f"'{self.factory}': {exc}; reinstall that package"
            ) from exc
        return obj

    def options_for(self, options: RunOptions, settings: Mapping[str, Any] | None = None) -> RunOptions:
        """``options`` completed for this component: its declared settings with ``settings`` applied
        (unknown keys are an error) and its weights file (``options.weights`` if given, else the shipped
        default, which must exist)."""
        resolved = resolve_settings(self.name, self.settings, settings or {})
        weights = options.weights
        if weights is None and self.default_weights is not None:
            weights = self.weights_path()
            if weights is None or not weights.is_file():
                raise LungtkError(
                    f"{self.kind} '{self.name}' from {self.provider}: its shipped weights {weights} are "
                    f"missing; reinstall {self.distribution} or pass a model file with --weights {self.name}=FILE"
                )
        elif weights is not None and not Path(weights).is_file():
            raise LungtkError(f"{self.kind} '{self.name}': weights file {weights} does not exist")
        return RunOptions(options.device, options.precision, options.batch_size, weights, resolved)

    def create(self, options: RunOptions | None = None, settings: Mapping[str, Any] | None = None) -> Any:
        """Build the component: its factory receives ``options`` completed by :meth:`options_for`."""
        return self.load()(self.options_for(options or RunOptions(), settings))


@dataclass
class Registry:
    """All registered components, by kind and name."""

    _specs: dict[Kind, dict[str, ComponentSpec]] = field(default_factory=lambda: {kind: {} for kind in KINDS})

    def add(self, spec: ComponentSpec) -> None:
        if spec.kind not in self._specs:
            raise ValueError(f"unknown component kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
        if not spec.name or spec.name.strip() != spec.name:
            raise ValueError(f"invalid {spec.kind} name {spec.name!r}")
        existing = self._specs[spec.kind].get(spec.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{spec.kind} '{spec.name}' is registered by both {existing.provider} and {spec.provider}; "
                f"uninstall one of them or block one with LUNGTK_DISABLE_PLUGINS"
            )
        self._specs[spec.kind][spec.name] = spec

    def remove(self, spec: ComponentSpec) -> None:
        if self._specs[spec.kind].get(spec.name) is spec:
            del self._specs[spec.kind][spec.name]

    def get(self, kind: Kind, name: str) -> ComponentSpec:
        try:
            return self._specs[kind][name]
        except KeyError:
            known = sorted(self._specs[kind])
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            listing = f"available: {', '.join(known)}" if known else f"no {kind} is installed"
            raise UnknownComponentError(
                f"unknown {kind} '{name}'; "
                + "; ".join(x for x in (hint, listing) if x)
                + " (see `lungtk plugins list`)"
            ) from None

    def create(
        self,
        kind: Kind,
        name: str,
        options: RunOptions | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        return self.get(kind, name).create(options, settings)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._specs[kind])

    def __iter__(self) -> Iterator[ComponentSpec]:
        for kind in KINDS:
            yield from (self._specs[kind][name] for name in sorted(self._specs[kind]))

    def __len__(self) -> int:
        return sum(len(v) for v in self._specs.values())


@dataclass
class Registrar:
    """What a registrar hook receives: adds components of one kind on behalf of one plugin."""

    kind: Kind
    distribution: str
    version: str
    added: list[ComponentSpec] = field(default_factory=list)

    def add(
        self,
        name: str,
        factory: Factory,
        *,
        summary: str = "",
        default_weights: str | None = None,
        settings: Mapping[str, SettingValue] | None = None,
    ) -> None:
        """Register ``factory`` (a callable or ``"module:attr"``, called with one ``RunOptions``) under
        ``name``, with the settings it accepts (``name -> default``) and its shipped weights
        (``"package:relative/path"``)."""
        self.added.append(
            ComponentSpec(
                name=name,
                kind=self.kind,
                factory=factory,
                summary=summary,
                distribution=self.distribution,
                version=self.version,
                default_weights=default_weights,
                settings=dict(settings or {}),
            )
        )
