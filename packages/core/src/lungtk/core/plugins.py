"""Discover and load plugins from the ``lungtk`` entry-point group.

First-party packages and third-party plugins are found the same way: through installed package metadata.
A plugin that fails to import or to register is reported (name, distribution, error) and skipped, unless
``LUNGTK_STRICT_PLUGINS=1``. ``LUNGTK_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point or
distribution name.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import pluggy

from lungtk.core import hookspecs
from lungtk.core.errors import LungtkError, PluginLoadError
from lungtk.core.registry import KINDS, ComponentSpec, Registrar, Registry

GROUP = "lungtk"
STRICT_ENV = "LUNGTK_STRICT_PLUGINS"
DISABLE_ENV = "LUNGTK_DISABLE_PLUGINS"

Status = Literal["loaded", "failed", "blocked"]


@dataclass
class PluginInfo:
    """One entry point of the ``lungtk`` group and what became of it."""

    name: str
    distribution: str
    version: str
    module: str
    status: Status
    error: str | None = None
    traceback: str | None = None
    components: list[ComponentSpec] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "components": [{"kind": c.kind, "name": c.name, "summary": c.summary} for c in self.components],
        }


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> set[str]:
    return {part.strip() for part in os.environ.get(name, "").split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.rstrip(":")


class Plugins:
    """The loaded plugins: a pluggy manager, per-plugin reports and the component registry."""

    def __init__(self, *, strict: bool | None = None, disabled: Iterable[str] | None = None) -> None:
        self.strict = _env_flag(STRICT_ENV) if strict is None else strict
        self.disabled = _env_list(DISABLE_ENV) if disabled is None else set(disabled)
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.registry = Registry()

    # -- loading -----------------------------------------------------------------------------------------
    def load_entry_points(self, eps: Iterable[EntryPoint] | None = None) -> Plugins:
        eps = entry_points(group=GROUP) if eps is None else eps
        for ep in sorted(eps, key=lambda e: e.name):
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
        self.infos.append(info)
        if info.name in self.disabled or info.distribution in self.disabled:
            info.status = "blocked"
            info.error = f"blocked by {DISABLE_ENV}"
            return info
        try:
            module = ep.load()
            self.pm.register(module, name=info.name)
            self._register_components(info, module)
        except Exception as exc:
            self._fail(info, exc)
        return info

    def _register_components(self, info: PluginInfo, module: Any) -> None:
        added: list[ComponentSpec] = []
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"lungtk_register_{kind}s")
            for impl in hook.get_hookimpls():
                if impl.plugin is module:
                    registrar = Registrar(kind, info.distribution, info.version)
                    impl.function(registry=registrar)
                    added.extend(registrar.added)
        committed: list[ComponentSpec] = []
        try:
            for spec in added:
                self.registry.add(spec)
                committed.append(spec)
        except LungtkError:
            for spec in committed:  # all or nothing: a half-registered plugin is confusing
                self.registry.remove(spec)
            raise
        info.components = added

    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.status = "failed"
        info.error = _describe(exc)
        info.traceback = "".join(traceback.format_exception(exc))
        info.components = []
        if self.pm.has_plugin(info.name):
            self.pm.unregister(name=info.name)
        if self.strict:
            raise PluginLoadError(
                f"plugin '{info.name}' from {info.distribution} {info.version} failed to load: {info.error} "
                f"(unset {STRICT_ENV} to skip it)"
            ) from exc

    # -- queries -----------------------------------------------------------------------------------------
    @property
    def failed(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.status == "failed"]

    def info_for(self, plugin: Any) -> PluginInfo | None:
        name = self.pm.get_name(plugin)
        return next((i for i in self.infos if i.name == name), None)

    def register_commands(self, app: Any) -> None:
        """Let every loaded plugin add its commands to ``app``; a plugin that raises is reported."""
        for impl in self.pm.hook.lungtk_register_commands.get_hookimpls():
            info = self.info_for(impl.plugin)
            try:
                impl.function(app=app)
            except Exception as exc:
                if info is None:
                    raise
                self._fail(info, exc)

    def reader_for(self, path: Any) -> Any | None:
        return self.pm.hook.lungtk_ct_reader(path=path)


@cache
def get_plugins() -> Plugins:
    """The process-wide plugins, loaded once from installed metadata."""
    return Plugins().load_entry_points()


def get_registry() -> Registry:
    return get_plugins().registry
