"""The ``lungtk`` command: built-in command groups plus whatever installed plugins add.

Commands are thin: they parse options and call library functions. Heavy imports (torch, SimpleITK)
happen inside the commands, so ``lungtk --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import typer
import typer.main
from typer.exceptions import Abort, TyperException
from typer.models import CommandInfo, TyperInfo

from lungtk.cli.console import error_line, one_line, warning
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


def _command_options(app: typer.Typer | None, argv: list[str]) -> set[str] | None:
    """The options (``--series``, ``-o``, ...) of the command that ``argv`` runs, or None if unknown."""
    if app is None:
        return None
    try:
        command: Any = typer.main.get_command(app)
        for token in argv:
            if token == "--":
                break
            subcommands = getattr(command, "commands", None)
            if subcommands is None:
                break
            if not token.startswith("-") and token in subcommands:
                command = subcommands[token]
        if getattr(command, "commands", None) is not None:
            return None  # a group: no single command ran
        return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    except Exception:  # only a message is at stake
        return None


# atomic writes go to ".<name>.<random>.tmp<suffix>" beside the target: name the target instead
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp.*$")

_OS_ERRORS = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied; check its permissions or use another path",
    errno.EPERM: "operation not permitted; check its permissions or use another path",
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EROFS: "on a read-only file system; write elsewhere",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "input/output error; the disk or file system may be failing",
}


def _shown_path(name: object) -> str:
    path = os.fsdecode(name) if isinstance(name, str | bytes | os.PathLike) else str(name)
    folder, base = os.path.split(path)
    temp = _TEMP_NAME.match(base)
    return os.path.join(folder, temp["name"]) if temp else path


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: the path (the target, not a hidden temporary file), what
    happened, what to do."""
    what = _OS_ERRORS.get(exc.errno or -1) or exc.strerror or str(exc) or type(exc).__name__
    paths = [_shown_path(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(paths)}: {what}" if paths else what


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A Python warning (numpy, nibabel, a plugin) as one visible line, not two lines of source."""
    where = os.path.basename(filename) if _debugging(sys.argv[1:]) else ""
    suffix = f" ({category.__name__}{f', {where}:{lineno}' if where else ''})"
    warning(f"{one_line(str(message))}{suffix}")


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one line and an exit code.

    Without --debug nothing prints a traceback: a user's mistake is one line (exit 1), a bug is one line
    that says so (exit 70)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = _debugging(argv)
    warnings.showwarning = _show_warning
    app = None
    try:
        app = build_app()
        status = app(args=argv, prog_name="lungtk", standalone_mode=False)
    except TyperException as exc:  # a mistake on the command line: one line, not Typer's panel
        if exc.__class__.__name__ == "NoArgsIsHelpError":  # the help is already shown
            sys.exit(exc.exit_code)
        error_line(usage_error_line(exc, argv))
        sys.exit(exc.exit_code)
    except Abort:
        error_line("aborted")
        sys.exit(1)
    except LungtkError as exc:
        if debug:
            raise
        error_line(exc.for_command(_command_options(app, argv)))
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as exc:  # file system trouble: a user can fix it
        if debug:
            raise
        error_line(os_error_line(exc))
        sys.exit(1)
    except MemoryError:
        if debug:
            raise
        error_line(
            "out of memory: the input needs more memory than this machine can give; check that the "
            "input is what you meant, or use a machine with more memory"
        )
        sys.exit(1)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
    except ImportError as exc:  # an optional dependency is not installed: the user can add it
        if debug:
            raise
        if not exc.name:
            _internal_error(exc)
        error_line(
            f"the Python package '{exc.name}' is needed here but cannot be imported ({one_line(str(exc))}); "
            "install it (e.g. `uv sync`) or run again with --debug"
        )
        sys.exit(1)
    except Exception as exc:  # a bug: say so in one line and where to get the details
        if debug:
            raise
        _internal_error(exc)
    if status == 130:
        error_line("interrupted")
    if isinstance(status, int) and status:
        sys.exit(status)


def _internal_error(exc: BaseException) -> NoReturn:
    """A bug: one line that says so and where to get the details; exit 70."""
    detail = " ".join(str(exc).split())  # one line, whatever the exception's text holds
    error_line(f"internal error: {type(exc).__name__}: {detail} (run again with --debug for the traceback)")
    sys.exit(70)


def _given_value(param: Any, argv: list[str]) -> str | None:
    """What the user typed for ``param`` (an option's value), to show it in the message."""
    for i, token in enumerate(argv):
        for opt in getattr(param, "opts", ()):
            if not opt.startswith("-"):
                continue
            if token == opt and i + 1 < len(argv):
                return argv[i + 1]
            if token.startswith(f"{opt}="):
                return token[len(opt) + 1 :]
    return None


def usage_error_line(exc: TyperException, argv: list[str]) -> str:
    """A command-line mistake as one line: what, the value as typed, where to read the usage."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    param = getattr(exc, "param", None)
    given = _given_value(param, argv) if param is not None else None
    if given is not None and repr(given) not in message:
        message = f"{message} (got {given!r})"
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f"; see `{ctx.command_path} --help`"
    return message


if __name__ == "__main__":
    run()
