"""A registry of lazily built components (detectors, segmenters, classifiers).

A plugin registers a *factory*: either a callable or an import path ``"package.module:attr"``. Nothing is
imported until a component is built, so listing components costs no torch import.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from lungtk.core.errors import DuplicateComponentError, LungtkError, UnknownComponentError

Kind = Literal["detector", "segmenter", "classifier"]
KINDS: tuple[Kind, ...] = ("detector", "segmenter", "classifier")

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

    @property
    def provider(self) -> str:
        return f"{self.distribution} {self.version}"

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

    def create(self, **kwargs: Any) -> Any:
        """Build the component; keyword arguments go to the factory."""
        return self.load()(**kwargs)


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

    def create(self, kind: Kind, name: str, **kwargs: Any) -> Any:
        return self.get(kind, name).create(**kwargs)

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
    ) -> None:
        """Register ``factory`` (a callable or ``"module:attr"``) under ``name``."""
        self.added.append(
            ComponentSpec(
                name=name,
                kind=self.kind,
                factory=factory,
                summary=summary,
                distribution=self.distribution,
                version=self.version,
                default_weights=default_weights,
            )
        )
