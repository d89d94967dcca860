"""Discover and load plugins from the ``lungtk`` entry-point group.

First-party packages and third-party plugins are found the same way: through installed package metadata.
Each entry point is registered with pluggy under its own name, ``"<distribution>:<entry point>"``, so
neither a plugin's entry-point name nor its failure can touch another plugin; an entry point to a module
that another one loads already fails (unless it is a first-party one: then the other fails).

**Failures.** A plugin that fails to import, to register its components or to add its commands is
reported (status ``failed``, with the error and its traceback) and skipped: nothing it registered stays.
Any exception counts, ``SystemExit`` (a ``sys.exit()`` in the plugin) included; only
``KeyboardInterrupt`` goes through. ``LUNGTK_STRICT_PLUGINS=1`` makes a failure a
:class:`~lungtk.core.errors.PluginLoadError`. ``LUNGTK_DISABLE_PLUGINS=a,b`` blocks plugins by
entry-point or distribution name.

**Name clashes.** When two distributions register a component of the same kind under the same name, the
outcome does not depend on the order in which they load:

- *first-party wins*: a package of this workspace (:data:`~lungtk.core.registry.FIRST_PARTY`) keeps the
  name; the third party's component of that name is ignored, its other components stay registered, and
  its :attr:`PluginInfo.warnings` says so (``detector 'blob' of fake-dist 1.0 is ignored: lungtk-detect
  0.1.0 provides it``), as ``lungtk plugins list`` shows;
- *third party against third party* (or first-party against first-party): the name is ambiguous. Neither
  component is used, both plugins get a warning, and ``registry.get(kind, name)`` raises a
  :class:`~lungtk.core.errors.DuplicateComponentError` naming both distributions and saying to uninstall
  one or block one with ``LUNGTK_DISABLE_PLUGINS``.

A plugin that registers the same name twice itself fails.

**Commands.** :meth:`Plugins.register_commands` hands each plugin a sandbox (the CLI's gives a fresh
Typer app) and then moves what the plugin added into the real app. A name that a built-in command or
group already has (or that an earlier plugin took) is refused: the plugin keeps status ``loaded`` and its
other commands, and gets a warning naming the refused command. A plugin can neither remove nor replace a
built-in command.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, Protocol

import pluggy

from lungtk.core import hookspecs
from lungtk.core.errors import DuplicateComponentError, LungtkError, PluginLoadError
from lungtk.core.geometry import Geometry
from lungtk.core.protocols import Volume
from lungtk.core.registry import KINDS, ComponentSpec, Registrar, Registry, is_first_party

GROUP = "lungtk"
STRICT_ENV = "LUNGTK_STRICT_PLUGINS"
DISABLE_ENV = "LUNGTK_DISABLE_PLUGINS"

Status = Literal["loaded", "failed", "blocked"]


@dataclass
class PluginInfo:
    """One entry point of the ``lungtk`` group and what became of it.

    ``components`` are the components in use; ``warnings`` say what of the plugin is not used and why (a
    name clash, a refused command) while its status stays ``loaded``.
    """

    name: str
    distribution: str
    version: str
    module: str
    status: Status
    error: str | None = None
    traceback: str | None = None
    components: list[ComponentSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key: str = ""  # the plugin's unique name in the pluggy manager: "distribution:entry point"
    offered: list[ComponentSpec] = field(default_factory=list, repr=False)  # in use or not
    command_warnings: list[str] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"plugin '{self.name}' from {self.distribution} {self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "warnings": list(self.warnings),
            "components": [c.describe() for c in self.components],
        }


class CommandSandbox(Protocol):
    """How :meth:`Plugins.register_commands` keeps a plugin away from the real command-line app."""

    def stage(self) -> Any:
        """A fresh object that one plugin's ``lungtk_register_commands`` receives instead of the app."""
        ...

    def commit(self, staged: Any, plugin: PluginInfo) -> list[str]:
        """Move what the plugin added to ``staged`` into the app; return a warning for each thing refused.

        Raising fails the plugin, so check everything before moving anything.
        """
        ...


@dataclass(frozen=True)
class PluginReader:
    """The reader a plugin's ``lungtk_ct_reader`` returned for a path.

    Calling it reads the volume. Whatever goes wrong is a :class:`LungtkError` naming the plugin: the
    reader raising (a ``LungtkError`` it raises goes through as it is), or returning something that is
    not a volume (``array``, ``geometry`` as a :class:`~lungtk.core.Geometry`, ``series_uid``).
    """

    read: Callable[[Any], Any]
    plugin: PluginInfo

    def __call__(self, path: Any) -> Volume:
        try:
            volume = self.read(path)
        except LungtkError:
            raise
        except (Exception, SystemExit) as exc:
            raise LungtkError(
                f"{path}: the reader of {self.plugin.label} failed: {_describe(exc)}; report it to that "
                f"plugin's authors, or block it with {DISABLE_ENV}={self.plugin.distribution} to use the "
                f"built-in readers"
            ) from exc
        if not isinstance(volume, Volume) or not isinstance(volume.geometry, Geometry):
            raise LungtkError(
                f"{path}: the reader of {self.plugin.label} returned a {type(volume).__name__}, not a volume "
                f"(array, geometry as a lungtk.core.Geometry, series_uid); report it to that plugin's "
                f"authors, or block it with {DISABLE_ENV}={self.plugin.distribution}"
            )
        return volume


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: it called sys.exit({'' if exc.code is None else repr(exc.code)})"
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.rstrip(":")


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def _call(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one hook implementation as pluggy does: with the arguments it asks for, by position."""
    return impl.function(*(kwargs[name] for name in impl.argnames))


class Plugins:
    """The loaded plugins: a pluggy manager, per-plugin reports and the component registry."""

    def __init__(self, *, strict: bool | None = None, disabled: Iterable[str] | None = None) -> None:
        self.strict = _env_flag(STRICT_ENV) if strict is None else strict
        self.disabled = _env_list(DISABLE_ENV) if disabled is None else set(disabled)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registry = Registry()
        self._by_key: dict[str, PluginInfo] = {}

    # -- loading -----------------------------------------------------------------------------------------
    def load_entry_points(self, eps: Iterable[EntryPoint] | None = None) -> Plugins:
        """Load ``eps`` (default: the installed ``lungtk`` entry points), first-party ones first, then by
        name. The order decides no name clash (see the module docstring); it does decide which plugin's
        reader is asked first (the last loaded) and which plugin gets a command name two plugins want."""
        eps = entry_points(group=GROUP) if eps is None else eps
        for ep in sorted(eps, key=lambda e: (not is_first_party(_dist_name(e)), e.name, _dist_name(e))):
            self.load_entry_point(ep)
        return self

    def load_entry_point(self, ep: EntryPoint) -> PluginInfo:
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            distribution=dist.name if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            module=ep.value,
            status="loaded",
        )
        info.key = key = f"{info.distribution}:{info.name}"
        serial = 1
        while info.key in self._by_key:  # the same distribution seen twice on sys.path
            serial += 1
            info.key = f"{key}#{serial}"
        self.infos.append(info)
        self._by_key[info.key] = info
        if info.name in self.disabled or info.distribution in self.disabled:
            info.status = "blocked"
            info.error = f"blocked by {DISABLE_ENV}"
            return info
        try:
            module = ep.load()
            if self.pm.is_registered(module):
                self._claim(info, module)
            self.pm.register(module, name=info.key)
            self._register_components(info, module)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit included: a plugin must not end the command
            self._fail(info, exc, "failed to load")
        self._refresh()
        return info

    def _claim(self, info: PluginInfo, module: Any) -> None:
        """``module`` is registered already, for another entry point: a first-party one keeps it (the
        other fails, whichever loaded first); else this one fails."""
        name = self.pm.get_name(module)
        other = self._by_key.get(name)
        if other is None or not is_first_party(info.distribution) or is_first_party(other.distribution):
            label = other.label if other is not None else f"plugin '{name}'"
            raise LungtkError(f"its module {info.module} is loaded already by {label}")
        self._fail(other, LungtkError(f"its module {other.module} belongs to {info.label}"), "failed to load")

    def _register_components(self, info: PluginInfo, module: Any) -> None:
        added: list[ComponentSpec] = []
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"lungtk_register_{kind}s")
            for impl in hook.get_hookimpls():
                if impl.plugin is module:
                    registrar = Registrar(kind, info.distribution, info.version)
                    _call(impl, registry=registrar)
                    added.extend(registrar.added)
        seen: set[tuple[str, str]] = set()
        for spec in added:
            if (spec.kind, spec.name) in seen:
                raise DuplicateComponentError(f"it registers {spec.kind} '{spec.name}' twice")
            seen.add((spec.kind, spec.name))
        try:
            for spec in added:
                self.registry.offer(spec)
                info.offered.append(spec)
        except BaseException:
            for spec in info.offered:  # all or nothing: a half-registered plugin is confusing
                self.registry.remove(spec)
            info.offered = []
            raise

    def _fail(self, info: PluginInfo, exc: BaseException, doing: str) -> None:
        info.status = "failed"
        info.error = _describe(exc)
        info.traceback = "".join(traceback.format_exception(exc))
        for spec in info.offered:
            self.registry.remove(spec)
        info.offered = []
        info.command_warnings = []
        if self.pm.has_plugin(info.key):
            self.pm.unregister(name=info.key)
        self._refresh()
        if self.strict:
            raise PluginLoadError(
                f"{info.label} {doing}: {info.error} (unset {STRICT_ENV} to skip it)"
            ) from exc

    def _refresh(self) -> None:
        """Recompute every plugin's components in use and warnings: a later plugin can change them."""
        for info in self.infos:
            info.components = [s for s in info.offered if self.registry.in_use(s)]
            conflicts = [self.registry.conflict(s) for s in info.offered]
            info.warnings = [w for w in conflicts if w] + info.command_warnings

    # -- queries -----------------------------------------------------------------------------------------
    @property
    def failed(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def _impls(self, hook_name: str, *, call_order: bool = False) -> Iterator[tuple[PluginInfo, Any]]:
        """The implementations of one hook with their plugins: in load order, or in pluggy's call order
        (last loaded first, ``tryfirst``/``trylast`` honoured)."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        for impl in reversed(impls) if call_order else impls:
            if impl.hookwrapper or impl.wrapper:
                continue
            info = self._by_key.get(impl.plugin_name)
            if info is None:  # registered on self.pm by hand, not through an entry point
                info = PluginInfo(
                    impl.plugin_name, "?", "?", repr(impl.plugin), "loaded", key=impl.plugin_name
                )
            yield info, impl

    def register_commands(self, app: Any, sandbox: CommandSandbox | None = None) -> None:
        """Let every loaded plugin add its commands to ``app``.

        With ``sandbox``, each plugin's hook receives ``sandbox.stage()`` instead of ``app`` and
        ``sandbox.commit`` moves what it may into ``app``; what it refuses becomes a warning on the plugin,
        whose status stays ``loaded``. A plugin whose hook raises (``SystemExit`` included) fails, as at
        import; without a sandbox what it added before raising stays.
        """
        for info, impl in list(self._impls("lungtk_register_commands")):
            try:
                target = app if sandbox is None else sandbox.stage()
                _call(impl, app=target)
                info.command_warnings = [] if sandbox is None else list(sandbox.commit(target, info))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                self._fail(info, exc, "failed to add its commands")
        self._refresh()

    def reader_for(self, path: Any) -> PluginReader | None:
        """The reader of the first plugin whose ``lungtk_ct_reader(path)`` answers, else ``None``.

        Plugins are asked in pluggy's order (the last loaded first). A hook that raises, or answers with
        something that is not callable, is a :class:`LungtkError` naming the plugin.
        """
        for info, impl in self._impls("lungtk_ct_reader", call_order=True):
            try:
                reader = _call(impl, path=path)
            except LungtkError:
                raise
            except (Exception, SystemExit) as exc:
                raise LungtkError(
                    f"{path}: {info.label} failed when asked whether it reads this file: {_describe(exc)}; "
                    f"block it with {DISABLE_ENV}={info.distribution} to use the built-in readers"
                ) from exc
            if reader is None:
                continue
            if not callable(reader):
                raise LungtkError(
                    f"{path}: lungtk_ct_reader of {info.label} returned a {type(reader).__name__}, not a "
                    f"callable reader(path); block it with {DISABLE_ENV}={info.distribution}"
                )
            return PluginReader(reader, info)
        return None


@cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once from installed metadata."""
    return Plugins().load_entry_points()


def get_registry() -> Registry:
    return get_plugins().registry
