"""Where the CLI writes: results to stdout, everything for humans (progress, notes, errors) to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True)


def note(message: str) -> None:
    stderr.print(message, highlight=False)


def error_line(message: str) -> None:
    """One line, no traceback: what went wrong, with what, and what to do."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A progress display on stderr (stdout stays machine-readable)."""
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    ) as progress:
        yield progress
