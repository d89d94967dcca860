"""The pipeline as a library: compose registered components, run them over scans, write the outputs.

>>> from lungtk.cli.pipeline import Pipeline, expand_scans, run
>>> from lungtk.core import get_plugins
>>> pipe = Pipeline.from_registry(get_plugins().registry, "blob", "regiongrow", ["size"])
>>> summary = run(pipe, expand_scans(["scans/"]), Path("out"))
"""

from lungtk.cli.pipeline.engine import Pipeline, resolve_device
from lungtk.cli.pipeline.inputs import expand_scans
from lungtk.cli.pipeline.run import RunSummary, run

__all__ = ["Pipeline", "RunSummary", "expand_scans", "resolve_device", "run"]
