"""The interfaces a detector, segmenter or classifier implements.

Components receive a volume (anything with ``array``, ``geometry`` and ``series_uid``; ``lungtk.ct_io``'s
``CTVolume`` is one) and exchange coordinates in patient millimetres only. Voxel indices stay inside a
component.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from lungtk.core.geometry import Geometry
from lungtk.core.results import Candidate, Finding, NoduleMask


@runtime_checkable
class Volume(Protocol):
    """A CT volume: voxels in Hounsfield units indexed (index, row, col), and where they sit."""

    @property
    def array(self) -> NDArray[np.generic]: ...

    @property
    def geometry(self) -> Geometry: ...

    @property
    def series_uid(self) -> str: ...


@runtime_checkable
class Detector(Protocol):
    """Finds candidate nodules in a whole scan."""

    def detect(self, ct: Volume) -> list[Candidate]: ...


@runtime_checkable
class Segmenter(Protocol):
    """Delineates each candidate; returns one mask per candidate, in the same order."""

    def segment(self, ct: Volume, candidates: Sequence[Candidate]) -> list[NoduleMask]: ...


@runtime_checkable
class Classifier(Protocol):
    """Labels each finding; returns one ``{task: {label: probability}}`` per finding, in order.

    Tasks are names such as ``nodule``, ``malignancy``, ``texture`` or ``pathology``.
    """

    def classify(self, ct: Volume, findings: Sequence[Finding]) -> list[dict[str, dict[str, float]]]: ...
