"""The pipeline as a library: compose registered components, run them over scans, write the outputs.

No typer and no torch are imported here; components come from the plug-in registry by name.

>>> from pathlib import Path
>>> from lungtk.core import get_registry
>>> from lungtk.pipeline import Pipeline, expand_scans, run
>>> pipe = Pipeline.from_registry(get_registry(), "blob", "regiongrow", ["size"])
>>> summary = run(pipe, expand_scans(["scans/"]), Path("out"))
"""

from lungtk.pipeline.contract import ScanError
from lungtk.pipeline.engine import Pipeline, resolve_device
from lungtk.pipeline.given import GivenCandidates
from lungtk.pipeline.inputs import expand_scans
from lungtk.pipeline.run import OutputError, RunSummary, run

__all__ = [
    "GivenCandidates",
    "OutputError",
    "Pipeline",
    "RunSummary",
    "ScanError",
    "expand_scans",
    "resolve_device",
    "run",
]
