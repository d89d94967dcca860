"""``lungtk plugins``: what is installed and what it provides."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.text import Text

from lungtk.cli.console import note, stdout, styled
from lungtk.core import ComponentSpec, get_plugins

app = typer.Typer(help="Installed plugins and the components they provide.", no_args_is_help=True)

_STATUS_STYLE = {"loaded": "green", "failed": "bold red", "blocked": "yellow"}


def _component_line(spec: ComponentSpec) -> Text:
    """``kind name`` and whether its weights are there; names and paths verbatim (never markup)."""
    line = styled(f"{spec.kind} {spec.name}")
    path = spec.weights_path()
    if path is not None:
        if path.is_file():
            line.append(" (weights shipped)")
        else:
            line.append(f" (weights missing: {path})", style="bold red")
    return line


@app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List plugins (entry-point group `lungtk`): distribution, version, status, warnings and components.

    A plugin's warnings say what of it is not used and why: a component name that a first-party package
    or another plugin has too, a command name that lungtk has. `lungtk --debug plugins list` also prints
    the traceback of each plugin that failed.
    """
    plugins = get_plugins()
    if os.environ.get("LUNGTK_DEBUG", "") not in {"", "0"}:
        for info in plugins.failed:
            note(f"{info.label} failed:\n{info.traceback or info.error or ''}")
    if as_json:
        stdout.print_json(json.dumps([info.as_dict() for info in plugins.infos]))
        return
    from rich.table import Table

    table = Table(title="lungtk plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "status", "components"):
        table.add_column(column, overflow="fold")
    for info in plugins.infos:
        components = Text("\n").join(_component_line(c) for c in info.components)
        status = styled((info.status, _STATUS_STYLE.get(info.status, "")))
        if info.error:
            status.append(f"\n{info.error}")
        for warning in info.warnings:
            status.append_text(styled("\n", ("warning:", "yellow"), f" {warning}"))
        table.add_row(
            Text(info.name), Text(info.distribution), Text(info.version), status, components or Text("-")
        )
    if not plugins.infos:
        stdout.print("no plugins installed (entry-point group `lungtk`)")
        return
    stdout.print(table)
