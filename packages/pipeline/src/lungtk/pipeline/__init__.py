"""The pipeline as a library: compose registered components, run them over scans, write the outputs.

No typer and no torch are imported here; components come from the plug-in registry by name.

>>> from pathlib import Path
>>> from lungtk.core import get_registry
>>> from lungtk.pipeline import Pipeline, expand_scans, run, run_processes
>>> pipe = Pipeline.from_registry(get_registry(), "blob", "regiongrow", ["size"])
>>> summary = run(pipe, expand_scans(["scans/"]), Path("out"))

or the same in 4 processes with one set of outputs (they are spawned and import the main module: in a
script, under ``if __name__ == "__main__":``):

>>> summary = run_processes(pipe, expand_scans(["scans/"]), Path("out"), 4)
"""

from lungtk.pipeline.contract import ScanError
from lungtk.pipeline.engine import Pipeline, resolve_device
from lungtk.pipeline.given import GivenCandidates
from lungtk.pipeline.inputs import expand_scans
from lungtk.pipeline.recipe import Recipe
from lungtk.pipeline.run import OutputError, RunSummary, run
from lungtk.pipeline.shard import Ranks, run_processes, run_ranks, shard_of

__all__ = [
    "GivenCandidates",
    "OutputError",
    "Pipeline",
    "Ranks",
    "Recipe",
    "RunSummary",
    "ScanError",
    "expand_scans",
    "resolve_device",
    "run",
    "run_processes",
    "run_ranks",
    "shard_of",
]
