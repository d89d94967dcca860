"""Where the CLI writes: results to stdout, everything for humans (progress, notes, errors) to stderr.

Text reaches the user as it is. Both consoles have Rich markup, emoji codes and highlighting off, so a
file name such as ``[bold]x[/]`` or a CSV cell ``[/x]`` is printed verbatim (never parsed, never dropped,
never an exception). Style is given separately, as :class:`rich.text.Text` spans (:func:`styled`), and
progress descriptions are plain text too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.text import Text

from lungtk.core.validate import Check

stdout = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
stderr = Console(stderr=True, markup=False, emoji=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain text with styled pieces, never parsed as markup: ``styled(("skipped", "yellow"), f" {name}")``."""
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


def note(message: str | Text) -> None:
    """A line for humans on stderr, printed verbatim (use :func:`styled` for colour)."""
    stderr.print(message if isinstance(message, Text) else Text(message), soft_wrap=True)


def warning(message: str) -> None:
    """``warning: message`` on stderr, verbatim."""
    note(styled(("warning:", "yellow"), f" {message}"))


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def one_line(text: str) -> str:
    """``text`` with control characters (a newline or escape sequence in a file name) written as
    ``\\n``, ``\\x1b``: one line on the terminal, nothing it would interpret."""
    return text.translate(_CONTROL)


def error_line(message: str) -> None:
    """One line, no traceback: what went wrong, with what, and what to do."""
    stderr.print(styled(("error:", "bold red"), f" {one_line(message)}"), soft_wrap=True)


def status(message: str) -> Status:
    """A spinner on stderr with ``message`` as plain text (``Console.status`` would parse markup)."""
    return stderr.status(Text(message))


def description_column() -> TextColumn:
    """A progress column showing the task's description as plain text (a file name stays verbatim)."""
    return TextColumn("{task.description}", markup=False, style="progress.description")


def plain_field_column(field: str) -> TextColumn:
    """A progress column showing ``task.fields[field]`` as plain text."""
    return TextColumn(f"{{task.fields[{field}]}}", markup=False)


@contextmanager
def progress_bar(*extra: ProgressColumn) -> Iterator[Progress]:
    """A progress display on stderr (stdout stays machine-readable); descriptions are plain text.

    If the work fails, the bar is cleared, so the error that follows is the only line left."""
    progress = Progress(
        description_column(),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    )
    with progress:
        try:
            yield progress
        except BaseException:
            clear_on_exit(progress)
            raise


def clear_on_exit(progress: Progress) -> None:
    """Make a running progress display vanish when it stops (call it when the work has failed)."""
    progress.live.transient = True


def checked(check: Check, **limits: Any) -> Callable[..., Any]:
    """A Typer callback that passes an option's value (each value, for a repeated option) through one of
    :mod:`lungtk.core.validate`'s checks, named by the option: a bad value is one line
    (``--min-prob: 7 is not a probability; use a number from 0 to 1``), never a silent wrong answer::

        min_prob: Annotated[float, typer.Option("--min-prob", callback=checked(validate.probability))]
    """

    def callback(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        name = max(param.opts, key=len) if param.opts else (param.name or "value").upper()
        if isinstance(value, list | tuple):
            return type(value)(check(v, name, **limits) for v in value)
        return check(value, name, **limits)

    return callback
