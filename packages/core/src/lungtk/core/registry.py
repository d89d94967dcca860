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
import re
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


@dataclass(frozen=True, eq=False)
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
    cpu_only: bool = False  # runs on the CPU whatever --device says (classical components: no torch)
    takes_weights: bool = True  # False: it loads no model file, and --weights NAME=FILE is an error

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
        except LungtkError:
            raise
        except (Exception, SystemExit) as exc:  # the module itself fails as it is imported
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            what = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
            raise LungtkError(
                f"{self.kind} '{self.name}' from {self.provider} cannot be loaded from "
                f"'{self.factory}': importing it raised {what}; report this to the maintainers of "
                f"{self.distribution}"
            ) from exc
        return obj

    def describe(self) -> dict[str, Any]:
        """What ``lungtk plugins list --json`` shows of this component (settings, weights and whether the
        shipped weights file is there)."""
        path = self.weights_path()
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "settings": dict(self.settings),
            "cpu_only": self.cpu_only,
            "takes_weights": self.takes_weights,
            "weights": None
            if path is None
            else {"default": self.default_weights, "path": str(path), "exists": path.is_file()},
        }

    def options_for(self, options: RunOptions, settings: Mapping[str, Any] | None = None) -> RunOptions:
        """``options`` completed for this component: its declared settings with ``settings`` applied
        (unknown keys are an error) and its weights file (``options.weights`` if given, else the shipped
        default, which must exist)."""
        resolved = resolve_settings(self.name, self.settings, settings or {})
        weights = options.weights
        if weights is not None and not self.takes_weights:
            raise LungtkError(
                f"{self.kind} '{self.name}' from {self.provider} loads no model file; drop its --weights "
                f"(or choose a learned {self.kind})"
            )
        if weights is None and self.default_weights is not None:
            weights = self.weights_path()
            if weights is None or not weights.is_file():
                raise LungtkError(
                    f"{self.kind} '{self.name}' from {self.provider}: its shipped weights {weights} are "
                    "missing",
                    option="--weights",
                    advice=f"reinstall {self.distribution} or pass a model file with --weights {self.name}=FILE",
                    otherwise=f"reinstall {self.distribution}",
                )
        elif weights is not None and not Path(weights).is_file():
            raise LungtkError(f"{self.kind} '{self.name}': weights file {weights} does not exist")
        return RunOptions(options.device, options.precision, options.batch_size, weights, resolved)

    def create(self, options: RunOptions | None = None, settings: Mapping[str, Any] | None = None) -> Any:
        """Build the component: its factory receives ``options`` completed by :meth:`options_for`."""
        return self.load()(self.options_for(options or RunOptions(), settings))


FIRST_PARTY: frozenset[str] = frozenset(
    {
        "lungtk",
        "lungtk-core",
        "lungtk-ct-io",
        "lungtk-nn-blocks",
        "lungtk-seg",
        "lungtk-cls",
        "lungtk-detect",
        "lungtk-fleischner",
        "lungtk-phantom",
        "lungtk-train",
        "lungtk-pipeline",
    }
)
"""The distributions of the lungtk workspace. Their components win a name clash with a third party's."""


def is_first_party(distribution: str) -> bool:
    """Whether ``distribution`` is one of :data:`FIRST_PARTY` (names compared as PEP 503 normalises them)."""
    return re.sub(r"[-_.]+", "-", distribution).lower() in FIRST_PARTY


def _providers(specs: list[ComponentSpec]) -> str:
    names = sorted(s.provider for s in specs)  # sorted: the message must not depend on the load order
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


def _winner(offers: list[ComponentSpec]) -> ComponentSpec | None:
    """The spec in use among those offered for one name, or ``None`` if the name is ambiguous.

    One offer is used. Among several, the single first-party one wins; with none (third parties only) or
    several first-party offers the name is ambiguous. The order of the offers never matters.
    """
    if len(offers) == 1:
        return offers[0]
    first = [s for s in offers if is_first_party(s.distribution)]
    return first[0] if len(first) == 1 else None


@dataclass
class Registry:
    """All registered components, by kind and name.

    :meth:`add` is strict: a name taken already is a :class:`DuplicateComponentError`. The plugin loader
    uses :meth:`offer` instead, which keeps every claim on a name and settles it whatever the order of
    the claims: a first-party component (:data:`FIRST_PARTY`) beats third-party ones, which are ignored;
    two or more third-party claims (or two first-party ones) make the name ambiguous: none is used and
    :meth:`get` says which distributions clash. :meth:`conflict` says what became of one claim.
    """

    _specs: dict[Kind, dict[str, ComponentSpec]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    _offers: dict[tuple[Kind, str], list[ComponentSpec]] = field(default_factory=dict)

    def _check(self, spec: ComponentSpec) -> None:
        if spec.kind not in self._specs:
            raise ValueError(f"unknown component kind {spec.kind!r}; expected one of {', '.join(KINDS)}")
        if not spec.name or spec.name.strip() != spec.name:
            raise ValueError(f"invalid {spec.kind} name {spec.name!r}")

    def add(self, spec: ComponentSpec) -> None:
        """Register ``spec``; a name of that kind taken already is a :class:`DuplicateComponentError`."""
        self._check(spec)
        offers = self._offers.get((spec.kind, spec.name))
        if offers:
            raise DuplicateComponentError(
                f"{spec.kind} '{spec.name}' is registered by both {_providers([*offers, spec])}; "
                f"uninstall one of them or block one with LUNGTK_DISABLE_PLUGINS"
            )
        self.offer(spec)

    def offer(self, spec: ComponentSpec) -> None:
        """Claim ``spec.name`` for ``spec`` next to any other claims; see the class docstring for who wins."""
        self._check(spec)
        key = (spec.kind, spec.name)
        offers = self._offers.setdefault(key, [])
        if not any(s is spec for s in offers):
            offers.append(spec)
        self._settle(key)

    def remove(self, spec: ComponentSpec) -> None:
        """Withdraw ``spec``'s claim (a plugin that failed); a name it made ambiguous may be settled again."""
        key = (spec.kind, spec.name)
        offers = [s for s in self._offers.get(key, []) if s is not spec]
        if offers:
            self._offers[key] = offers
        else:
            self._offers.pop(key, None)
        self._settle(key)

    def _settle(self, key: tuple[Kind, str]) -> None:
        kind, name = key
        winner = _winner(self._offers.get(key, []))
        if winner is None:
            self._specs[kind].pop(name, None)
        else:
            self._specs[kind][name] = winner

    def in_use(self, spec: ComponentSpec) -> bool:
        return self._specs[spec.kind].get(spec.name) is spec

    def conflict(self, spec: ComponentSpec) -> str | None:
        """Why ``spec`` is not used, in one line, or ``None`` if it is used (or was never offered)."""
        offers = self._offers.get((spec.kind, spec.name), [])
        if self.in_use(spec) or not any(s is spec for s in offers):
            return None
        what = f"{spec.kind} '{spec.name}' of {spec.provider}"
        winner = self._specs[spec.kind].get(spec.name)
        if winner is not None:
            return f"{what} is ignored: {winner.provider} provides it"
        others = [s for s in offers if s is not spec]
        return (
            f"{what} is not used: {_providers(others)} also provide{'s' if len(others) == 1 else ''} it; "
            f"uninstall one of them or block one with LUNGTK_DISABLE_PLUGINS"
        )

    def get(self, kind: Kind, name: str) -> ComponentSpec:
        try:
            return self._specs[kind][name]
        except KeyError:
            pass
        offers = self._offers.get((kind, name))
        if offers:  # claimed by several distributions and none wins
            blocks = " or ".join(
                f"LUNGTK_DISABLE_PLUGINS={d}" for d in sorted({s.distribution for s in offers})
            )
            raise DuplicateComponentError(
                f"{kind} '{name}' is registered by both {_providers(offers)}, so lungtk uses neither; "
                f"uninstall one of them or block one with {blocks}"
            )
        known = sorted(self._specs[kind])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = f"available: {', '.join(known)}" if known else f"no {kind} is installed"
        raise UnknownComponentError(
            f"unknown {kind} '{name}'; "
            + "; ".join(x for x in (hint, listing) if x)
            + " (see `lungtk plugins list`)"
        )

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
        cpu_only: bool = False,
        takes_weights: bool = True,
    ) -> None:
        """Register ``factory`` (a callable or ``"module:attr"``, called with one ``RunOptions``) under
        ``name``, with the settings it accepts (``name -> default``) and its shipped weights
        (``"package:relative/path"``). ``cpu_only`` components are never handed a GPU (and building
        them imports no torch); ``takes_weights=False`` says it loads no model file (a ``--weights`` for
        it is then an error, not silently ignored)."""
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
                cpu_only=cpu_only,
                takes_weights=takes_weights,
            )
        )
