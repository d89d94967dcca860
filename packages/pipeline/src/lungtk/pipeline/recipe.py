"""How a pipeline was built, as plain data: another process builds the same pipeline from it.

:meth:`Pipeline.from_registry <lungtk.pipeline.engine.Pipeline.from_registry>` keeps its arguments as a
:class:`Recipe` (``pipeline.recipe``). Components need not be picklable: a process that takes a share of
the scans (:func:`lungtk.pipeline.shard.run_processes`) receives the recipe and builds its own pipeline
from the installed plugins, on its own GPU when it runs on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lungtk.pipeline.engine import Pipeline


@dataclass(frozen=True)
class Recipe:
    """The arguments of ``Pipeline.from_registry``; the registry is the installed plugins'."""

    detector: Any  # a registered name, or a ready-made detector (e.g. GivenCandidates) as given
    segmenter: str
    classifiers: tuple[str, ...]
    device: str = "auto"  # as the user gave it (auto, cpu, cuda, cuda:N): each process resolves it
    precision: str = "fp32"
    batch_size: int = 16
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, Path] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # threshold, scheme, risk

    def build(self, *, local_rank: int | None = None) -> Pipeline:
        """The same pipeline, built in this process from the installed plugins; ``local_rank`` (this
        process's number on its machine) picks its GPU when the device resolves to ``cuda``."""
        from lungtk.core import get_registry
        from lungtk.pipeline.engine import Pipeline

        return Pipeline.from_registry(
            get_registry(),
            self.detector,
            self.segmenter,
            list(self.classifiers),
            device=self.device,
            precision=self.precision,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            settings=self.settings,
            weights=self.weights,
            local_rank=local_rank,
            **self.options,
        )
