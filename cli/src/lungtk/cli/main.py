"""The ``lungtk`` command: built-in command groups plus whatever installed plugins add.

Commands are thin: they parse options and call library functions. Heavy imports (torch, SimpleITK)
happen inside the commands, so ``lungtk --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
import typer.main
from typer.models import CommandInfo, TyperInfo

from lungtk.cli.console import error_line
from lungtk.core import LungtkError, PluginInfo, get_plugins

DEBUG_ENV = "LUNGTK_DEBUG"


def _version() -> str:
    try:
        return version("lungtk")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"lungtk {_version()}")
        raise typer.Exit()


def _root(
    version_: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show tracebacks for errors (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """lungtk: lung-nodule analysis on chest CT, from plug-in components.

    Results go to stdout; progress and messages go to stderr.
    """
    if debug:
        os.environ[DEBUG_ENV] = "1"


def _names_of(entry: CommandInfo | TyperInfo, *, build: bool = False) -> list[str]:
    """The top-level command names that one registered command or group gives, as Typer resolves them
    (a group added without a name brings its commands up one level). With ``build`` the commands are
    built as Typer will build them, so a command Typer cannot build raises here, not when lungtk runs."""
    if not build and isinstance(entry.name, str) and entry.name:
        return [entry.name]
    if not build and isinstance(entry, CommandInfo) and entry.callback is not None:
        return [typer.main.get_command_name(entry.callback.__name__)]
    probe = typer.Typer()
    if isinstance(entry, CommandInfo):
        probe.registered_commands.append(entry)
    else:
        probe.registered_groups.append(entry)
    return list(typer.main.get_group(probe).commands)


class PluginCommands:
    """What keeps plugins' commands from touching the built-in ones (a ``CommandSandbox``).

    Each plugin's ``lungtk_register_commands`` gets a fresh ``typer.Typer`` of its own; what it added is
    then built (a command that Typer cannot build fails the plugin, instead of every ``lungtk`` command)
    and moved into the real app, except a command or group whose name is taken: by a built-in one (the
    names ``app`` has when this is made, so nothing is listed by hand) or by an earlier plugin. A refused
    name is a warning on the plugin, whose status stays ``loaded`` and whose other commands stay; setting
    a callback (lungtk's own options) is refused the same way.
    """

    def __init__(self, app: typer.Typer) -> None:
        self.app = app
        entries: list[Any] = [*app.registered_commands, *app.registered_groups]
        self.owners = {name: "a built-in lungtk command" for e in entries for name in _names_of(e)}

    def stage(self) -> typer.Typer:
        return typer.Typer()

    def commit(self, staged: typer.Typer, plugin: PluginInfo) -> list[str]:
        who = f"{plugin.distribution} {plugin.version}"
        entries: list[Any] = [*staged.registered_commands, *staged.registered_groups]
        named = [(e, _names_of(e, build=True)) for e in entries]  # a command Typer cannot build fails here
        warnings = []
        if staged.registered_callback is not None:
            warnings.append(f"the callback of {who} is ignored: a plugin may not change lungtk's own options")
        for entry, names in named:
            taken = [n for n in names if n in self.owners]
            if taken:
                warnings += [f"command '{n}' of {who} is refused: it is {self.owners[n]}" for n in taken]
                continue
            self.owners.update(dict.fromkeys(names, f"taken by {plugin.label}"))
            if isinstance(entry, CommandInfo):
                self.app.registered_commands.append(entry)
            else:
                self.app.registered_groups.append(entry)
        return warnings


def build_app() -> typer.Typer:
    """A fresh ``lungtk`` app with the built-in groups and every loaded plugin's commands."""
    from lungtk.cli.commands import (
        cache,
        convert,
        data,
        evaluate,
        fleischner,
        models,
        phantom,
        pipeline,
        plugins,
        train,
    )

    app = typer.Typer(
        name="lungtk",
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        callback=_root,
    )
    app.add_typer(cache.app, name="cache")
    app.add_typer(convert.app, name="convert")
    app.add_typer(data.app, name="data")
    app.add_typer(evaluate.app, name="eval")
    app.add_typer(fleischner.app, name="fleischner")
    app.add_typer(pipeline.app, name="pipeline")
    app.add_typer(plugins.app, name="plugins")
    app.command("demo")(pipeline.demo)
    app.command("phantom")(phantom.phantom)
    app.command("train")(train.train)
    app.add_typer(models.app, name="models")
    get_plugins().register_commands(app, PluginCommands(app))
    return app


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in {"", "0"}


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one line and an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        app = build_app()
        app(args=argv, prog_name="lungtk")
    except LungtkError as exc:
        if _debugging(argv):
            raise
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:  # file system trouble: a user can fix it
        if _debugging(argv):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        error_line(f"{exc.strerror or exc}{where}")
        sys.exit(1)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line and where to get the details
        if _debugging(argv):
            raise
        error_line(f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
        sys.exit(70)


if __name__ == "__main__":
    run()
