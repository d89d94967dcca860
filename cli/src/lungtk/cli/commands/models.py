"""``lungtk models``: what a model file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lungtk.cli.console import note, stdout

app = typer.Typer(help="Model files (.safetensors with lungtk metadata).", no_args_is_help=True)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command("info")
def info(
    file: Annotated[Path, typer.Argument(help="A model file written by `lungtk train`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture and arguments, preprocessing, training data and configuration, metrics, version,
    tensors and parameters. Reads the file's header only (no torch)."""
    from lungtk.train.modelfile import describe

    described = describe(file)
    if as_json:
        print(json.dumps(described, indent=2, sort_keys=True))
        return
    from rich.table import Table

    training = dict(described.get("training") or {})
    config = training.pop("config", {})
    table = Table(show_header=False, title=str(file), title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("architecture", described["architecture"]),
        ("arguments", _short(described.get("arch_args", {}))),
        ("task", described.get("task", "")),
        ("preprocessing", _short(described.get("preprocessing", {}))),
        ("training", _short(training)),
        ("configuration", _short(config)),
        ("metrics", _short(described.get("metrics", {}))),
        (
            "tensors",
            f"{described['tensors']} ({', '.join(described['dtypes'])}), {described['parameters']:,} parameters",
        ),
        (
            "file",
            f"{described['bytes']:,} bytes, lungtk {described.get('lungtk_version', '?')}, {described.get('created', '')}",
        ),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    stdout.print(table)


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(help="A model file written by `lungtk train`.")],
    out: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="float16 (half the size, as lungtk ships weights), bfloat16 or float32."
        ),
    ] = "float16",
) -> None:
    """Copy a model file with its weights in another precision (same metadata); prints the new file."""
    from lungtk.train.modelfile import convert_model

    written = convert_model(file, out, dtype)
    note(f"wrote {written} ({written.stat().st_size / 2**20:.2f} MiB, {dtype})")
    stdout.print(str(written), highlight=False)
