"""``lungtk cache``: decode scans once into the disk cache, inspect it, clear it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import note, progress_bar, stdout
from lungtk.core import LungtkError

app = typer.Typer(
    help="The scan cache ($LUNGTK_CACHE_DIR, default ~/.cache/lungtk): scans decoded once, cropped fast.",
    no_args_is_help=True,
)


WARM_OPTIONS = ("--help",)  # the options of `lungtk cache warm`, for errors' advice


@app.command("warm")
def warm(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Scans, folders searched for scans (a DICOM folder is one scan) or list files, as for "
            "`lungtk pipeline run`."
        ),
    ],
) -> None:
    """Decode scans into the cache (already cached ones are skipped). A scan that cannot be read is
    reported and the others are still cached; the exit status is then 1."""
    from lungtk.ct_io.cache import CacheError, VolumeCache
    from lungtk.pipeline import expand_scans

    cache = VolumeCache()
    scans = [path for _, path in expand_scans(paths)]
    decoded = 0
    failed: list[str] = []
    with progress_bar() as progress:
        task = progress.add_task("warming cache", total=len(scans))
        for scan in scans:
            try:
                decoded += cache.warm(scan)
            except CacheError:
                raise  # the cache itself is unusable: no point going on
            except LungtkError as exc:  # advice naming an option applies only if `cache warm` has it
                failed.append(exc.for_command(WARM_OPTIONS))
            progress.advance(task)
    cached = len(scans) - decoded - len(failed)
    note(f"{decoded} decoded, {cached} already cached, in {cache.root}")
    for message in failed:
        note(f"skipped: {message}")
    if failed:
        raise LungtkError(
            f"{len(failed)} of {len(scans)} scan(s) could not be cached (listed above); fix or remove them"
        )


@app.command("info")
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Where the cache is and how much it holds."""
    from lungtk.ct_io.cache import VolumeCache

    details = VolumeCache().info()
    if as_json:
        stdout.print_json(json.dumps(details.as_dict()))
    else:
        print(
            f"root: {details.root}\nvolumes: {details.volumes}\ncrops: {details.crops}\n"
            f"size: {details.bytes / 2**20:.1f} MiB"
        )


@app.command("clear")
def clear() -> None:
    """Remove every cached scan and crop."""
    from lungtk.ct_io.cache import VolumeCache

    cache = VolumeCache()
    freed = cache.clear()
    note(f"cleared {cache.root} ({freed / 2**20:.1f} MiB freed)")
