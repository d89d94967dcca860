"""The pipeline: read -> detect -> segment -> classify -> measure -> Fleischner, for one scan at a time.

Components come from the registry by name, so a plugin's detector composes with a first-party segmenter
exactly as first-party ones do. Coordinates cross every stage in patient millimetres.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Finding, LungtkError, Registry, Volume
from lungtk.core.registry import ComponentSpec
from lungtk.ct_io.crops import paste
from lungtk.ct_io.measure import measure
from lungtk.fleischner import Nodule, Recommendation, parse_texture
from lungtk.fleischner.tables import Case, recommend_cases

STAGES = ("read", "detect", "segment", "classify", "fleischner", "write")
ASSUMED_TEXTURE = "solid"


@dataclass(frozen=True)
class Component:
    """A built component and where it came from (for the provenance in findings.json)."""

    spec: ComponentSpec
    instance: Any

    def describe(self) -> dict[str, str]:
        return {"name": self.spec.name, "distribution": self.spec.distribution, "version": self.spec.version}


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def resolve_device(spec: str, needed: bool) -> str:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> the device to run on. Torch is imported only when a
    component takes a device (``needed``); classical components always run on the CPU."""
    spec = spec.strip().lower()
    if spec not in ("auto", "cpu", "cuda") and not (spec.startswith("cuda:") and spec[5:].isdigit()):
        raise LungtkError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not needed or spec == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise LungtkError(f"--device {spec}: CUDA is not available here; use --device cpu or auto")
    index = int(spec[5:]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise LungtkError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return spec


@dataclass(frozen=True)
class FindingRow:
    """One finding as the outputs write it (patient mm; probabilities in 0..1)."""

    seriesuid: str
    finding: int
    center_xyz: tuple[float, float, float]
    probability: float
    diameter_mm: float
    volume_mm3: float | None
    solid_component_mm: float | None
    texture: str
    texture_probabilities: dict[str, float] | None
    malignancy: float | None
    labels: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        x, y, z = self.center_xyz
        return {
            "seriesuid": self.seriesuid,
            "finding": self.finding,
            "coordX": round(x, 3),
            "coordY": round(y, 3),
            "coordZ": round(z, 3),
            "probability": round(self.probability, 6),
            "diameter_mm": round(self.diameter_mm, 3),
            "volume_mm3": None if self.volume_mm3 is None else round(self.volume_mm3, 3),
            "solid_component_mm": None
            if self.solid_component_mm is None
            else round(self.solid_component_mm, 3),
            "texture": self.texture,
            "texture_assumed": self.texture_probabilities is None,
            "texture_probabilities": self.texture_probabilities,
            "malignancy": None if self.malignancy is None else round(self.malignancy, 6),
            "labels": self.labels,
        }


@dataclass
class ScanResult:
    """What the pipeline learnt about one scan."""

    seriesuid: str
    path: str
    rows: list[FindingRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    recommendation: Recommendation | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Timer:
    """Adds up seconds per stage."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - start


def _texture(labels: dict[str, dict[str, float]]) -> tuple[str, dict[str, float] | None]:
    probs = labels.get("texture")
    if not probs:
        return ASSUMED_TEXTURE, None
    return max(probs, key=probs.__getitem__), probs


@dataclass
class Pipeline:
    """A detector, a segmenter and any number of classifiers, plus how findings become a recommendation."""

    detector: Component
    segmenter: Component
    classifiers: list[Component]
    device: str = "cpu"
    batch_size: int = 16
    threshold: float = 0.5
    scheme: str = "fleischner2017"
    risk: str = "high"

    @classmethod
    def from_registry(
        cls,
        registry: Registry,
        detector: str,
        segmenter: str,
        classifiers: Sequence[str],
        *,
        device: str = "auto",
        batch_size: int = 16,
        **settings: Any,
    ) -> Pipeline:
        """Build the named components (unknown names fail with suggestions before anything is built)."""
        if batch_size < 1:
            raise LungtkError(f"--batch-size {batch_size}: use 1 or more")
        specs = [
            registry.get("detector", detector),
            registry.get("segmenter", segmenter),
            *(registry.get("classifier", c) for c in classifiers),
        ]
        factories = [spec.load() for spec in specs]
        resolved = resolve_device(device, any(_accepts(f, "device") for f in factories))
        built = []
        for spec, factory in zip(specs, factories, strict=True):
            kwargs: dict[str, Any] = {}
            if _accepts(factory, "device"):
                kwargs["device"] = resolved
            if _accepts(factory, "batch_size"):
                kwargs["batch_size"] = batch_size
            built.append(Component(spec, factory(**kwargs)))
        return cls(built[0], built[1], built[2:], device=resolved, batch_size=batch_size, **settings)

    def describe(self) -> dict[str, Any]:
        return {
            "detector": self.detector.describe(),
            "segmenter": self.segmenter.describe(),
            "classifiers": [c.describe() for c in self.classifiers],
        }

    def analyse(self, ct: Volume, result: ScanResult) -> None:
        """Detect, segment, classify and measure ``ct``; fill ``result`` (rows sorted by probability)."""
        timer = Timer(result.timings)
        with timer.stage("detect"):
            candidates = sorted(self.detector.instance.detect(ct), key=lambda c: -c.probability)
        with timer.stage("segment"):
            masks = []
            for start in range(0, len(candidates), self.batch_size):
                batch = candidates[start : start + self.batch_size]
                got = self.segmenter.instance.segment(ct, batch)
                if len(got) != len(batch):
                    raise LungtkError(
                        f"segmenter '{self.segmenter.spec.name}' returned {len(got)} masks for {len(batch)} "
                        f"candidates; report this to {self.segmenter.spec.distribution}"
                    )
                masks.extend(got)
            findings = [Finding(c, m) for c, m in zip(candidates, masks, strict=True)]
        with timer.stage("classify"):
            for classifier in self.classifiers:
                labels = classifier.instance.classify(ct, findings)
                findings = [f.with_labels(lab) for f, lab in zip(findings, labels, strict=True)]
            rows = [self._row(ct, result.seriesuid, i, f) for i, f in enumerate(findings, start=1)]
        result.findings, result.rows = findings, rows

    def _row(self, ct: Volume, uid: str, index: int, finding: Finding) -> FindingRow:
        candidate = finding.candidate
        m = measure(ct, finding.mask) if finding.mask is not None else None
        has_mask = m is not None and m.volume_mm3 > 0
        texture, texture_probs = _texture(finding.labels)
        # A classifier that judges nodule-ness (false-positive reduction) overrides the detector's score.
        nodule = finding.labels.get("nodule")
        probability = float(nodule.get("nodule", candidate.probability)) if nodule else candidate.probability
        malignancy = finding.labels.get("malignancy", {}).get("malignant")
        return FindingRow(
            seriesuid=uid,
            finding=index,
            center_xyz=candidate.center_xyz,
            probability=probability,
            diameter_mm=m.diameter_mm if has_mask else candidate.diameter_mm,
            volume_mm3=m.volume_mm3 if has_mask else None,
            solid_component_mm=m.solid_component_mm if has_mask else None,
            texture=texture,
            texture_probabilities=texture_probs,
            malignancy=malignancy,
            labels=finding.labels,
        )

    def recommend(self, result: ScanResult) -> None:
        """The follow-up recommendation from the findings at or above ``threshold``."""
        with Timer(result.timings).stage("fleischner"):
            nodules = [
                Nodule(
                    texture=parse_texture(row.texture),
                    diameter_mm=row.diameter_mm,
                    volume_mm3=row.volume_mm3,
                    solid_component_mm=row.solid_component_mm,
                    probability=row.probability,
                    id=str(row.finding),
                )
                for row, _ in self.reported(result)
                if row.diameter_mm > 0
            ]
            case = Case(result.seriesuid, nodules)
            (result.recommendation,) = recommend_cases(
                {case.patient: case}, self.scheme, self.risk, min_probability=self.threshold
            )
            if any(row.texture_probabilities is None for row, _ in self.reported(result)):
                result.recommendation.notes.append(
                    f"no classifier gave a texture; findings were taken as {ASSUMED_TEXTURE}"
                )

    def label_volume(self, shape: tuple[int, ...], result: ScanResult, ct_geometry: Any) -> NDArray[np.uint8]:
        """One label per reported finding (its number in the table; at most 255) in the scan's grid."""
        labels = np.zeros(shape, dtype=np.uint8)
        for row, finding in self.reported(result)[:255]:
            if finding.mask is None or not finding.mask.mask.any():
                continue
            patch = finding.mask.mask.astype(np.uint8) * np.uint8(min(row.finding, 255))
            paste(labels, patch, finding.mask.start_in(ct_geometry), op="max")
        return labels

    def reported(self, result: ScanResult) -> list[tuple[FindingRow, Finding]]:
        """The findings at or above ``threshold`` (the report, the masks and the recommendation show these)."""
        return [
            (r, f)
            for r, f in zip(result.rows, result.findings, strict=True)
            if r.probability >= self.threshold
        ]
