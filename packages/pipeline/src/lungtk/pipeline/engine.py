"""The pipeline: read -> detect -> segment -> classify -> measure -> Fleischner, for one scan at a time.

Components come from the registry by name, so a plugin's detector composes with a first-party segmenter
exactly as first-party ones do. Coordinates cross every stage in patient millimetres.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Detector, Finding, LungtkError, NoduleMask, Precision, Registry, RunOptions, Volume
from lungtk.core.labels import (
    LUNA16_DIAMETER,
    LUNA16_ID,
    LUNA16_PROBABILITY,
    LUNA16_XYZ,
    MALIGNANCY,
    NODULE,
    PATHOLOGY,
    SOLID,
    TEXTURE,
    is_reported,
    positive_probability,
)
from lungtk.core.presets import DEFAULT_THRESHOLD
from lungtk.core.registry import ComponentSpec
from lungtk.ct_io.crops import paste
from lungtk.ct_io.measure import measure
from lungtk.fleischner import Nodule, Recommendation, parse_texture
from lungtk.fleischner.tables import Case, recommend_cases
from lungtk.pipeline.contract import (
    as_list,
    calling,
    check_built,
    check_candidates,
    check_labels,
    check_masks,
    one_line,
)
from lungtk.pipeline.recipe import Recipe

STAGES = ("read", "detect", "segment", "classify", "fleischner", "write")
MAX_LABEL = 255  # masks/<uid>.nii.gz is uint8: the first 255 reported findings; 255 or more share 255
ASSUMED_TEXTURE = SOLID


@dataclass(frozen=True)
class Component:
    """A built component and where it came from (for the provenance in findings.json)."""

    spec: ComponentSpec
    instance: Any
    supplied: str | None = None  # a ready-made detector: what the caller gave (e.g. a candidates table)
    options: RunOptions | None = None  # what its factory received (settings, weights, precision)

    def describe(self) -> dict[str, str]:
        return {"name": self.spec.name, "distribution": self.spec.distribution, "version": self.spec.version}

    @property
    def label(self) -> str:
        """Who to name in a message: the component and the distribution that registered it."""
        if self.supplied:
            return self.supplied
        return f"{self.spec.kind} '{self.spec.name}' ({self.spec.provider})"

    @property
    def advice(self) -> str:
        if self.supplied:
            return "check what was given (locations in patient mm, x y z as LUNA16 gives them)"
        return f"report this to the maintainers of {self.spec.distribution}"

    @property
    def verb(self) -> str:
        return "gives" if self.supplied else "returned"


def resolve_device(spec: str, needed: bool) -> str:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> the device to run on. Torch is imported only when a
    component can use a device other than the CPU (``needed``)."""
    spec = spec.strip().lower()
    if spec not in ("auto", "cpu", "cuda") and not (spec.startswith("cuda:") and spec[5:].isdigit()):
        raise LungtkError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not needed or spec == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if spec == "auto":
            return "cpu"
        raise LungtkError(f"--device {spec}: torch is not installed; use --device cpu") from None

    available = torch.cuda.is_available()
    if spec == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise LungtkError(f"--device {spec}: CUDA is not available here; use --device cpu or auto")
    index = int(spec[5:]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise LungtkError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return spec


def _gpu_of(local_rank: int) -> str:
    """The GPU of the process numbered ``local_rank`` on this machine (several processes share a GPU
    when there are more processes than GPUs)."""
    try:
        import torch
    except ImportError:  # the device resolved to cuda through torch: it is there
        return "cuda"
    return f"cuda:{local_rank % max(1, torch.cuda.device_count())}"


def _ready(detector: Detector) -> ComponentSpec:
    """A spec for a detector built by the caller (it takes no options and runs on the CPU)."""
    name = getattr(detector, "source", type(detector).__name__)
    return ComponentSpec(
        name,
        "detector",
        lambda options: detector,
        distribution="lungtk-pipeline",
        version=pipeline_version(),
        cpu_only=True,
    )


def _supplied(detector: Any) -> str:
    table = getattr(detector, "table", None)
    if table:
        return f"the candidates table {table}"
    return f"the given detector {getattr(detector, 'source', type(detector).__name__)!r}"


def _build(spec: ComponentSpec, options: RunOptions, supplied: str | None) -> Component:
    """Call the factory; whatever it raises names the component and its distribution."""
    factory = spec.load()
    component = Component(spec, None, supplied, options)
    try:
        instance = factory(options)
    except LungtkError as exc:
        raise LungtkError(f"{component.label} cannot be built: {one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise LungtkError(
            f"{component.label} cannot be built: its factory failed: {one_line(exc)}; {component.advice}"
        ) from exc
    return replace(component, instance=instance)


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution``; ``0+unknown`` when it is not installed as one."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0+unknown"


def pipeline_version() -> str:
    return distribution_version("lungtk-pipeline")


def _per_component(
    given: Mapping[str, Any], roles: dict[str, ComponentSpec], what: str
) -> dict[ComponentSpec, Any]:
    """Map ``--set``/``--weights`` keys (a component's name or its role: detector, segmenter,
    classifier) to the components they address; a key that names none of them is an error."""
    addressed: dict[ComponentSpec, Any] = {}
    names = {spec.name: spec for spec in roles.values()}
    for key, value in given.items():
        targets = [roles[key]] if key in roles else [s for s in roles.values() if s.name == key]
        if not targets:
            known = ", ".join(sorted({*names, *roles}))
            raise LungtkError(f"{what} {key}: not a component of this pipeline (use one of: {known})")
        for spec in targets:
            addressed[spec] = value
    return addressed


def finding_probability(detector: float, nodule: float | None, detector_scores: bool = True) -> float:
    """A finding's probability: the detector's score, averaged with a nodule classifier's probability
    (false-positive reduction) when there is one. Two models that err differently rank better together
    than either alone: on calibration phantoms (seed 8000, never used for training or evaluation) CPM
    0.52 (blob) and 0.67 (nodule-cnn alone) -> 0.72 averaged; 0.72 (nodulenet) and 0.57 -> 0.74. Locations
    given without probabilities (``detector_scores`` false) take the classifier's alone."""
    if nodule is None:
        return detector
    return (detector + nodule) / 2 if detector_scores else nodule


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
        return {
            LUNA16_ID: self.seriesuid,
            "finding": self.finding,
            **{column: round(v, 3) for column, v in zip(LUNA16_XYZ, self.center_xyz, strict=True)},
            LUNA16_PROBABILITY: round(self.probability, 6),
            LUNA16_DIAMETER: round(self.diameter_mm, 3),
            "volume_mm3": None if self.volume_mm3 is None else round(self.volume_mm3, 3),
            "solid_component_mm": None
            if self.solid_component_mm is None
            else round(self.solid_component_mm, 3),
            TEXTURE: self.texture,
            "texture_assumed": self.texture_probabilities is None,
            "texture_probabilities": self.texture_probabilities,
            MALIGNANCY: None if self.malignancy is None else round(self.malignancy, 6),
            PATHOLOGY: _most_probable(self.labels.get(PATHOLOGY)),
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
    stage: str | None = None  # the stage running now or last

    @property
    def ok(self) -> bool:
        return self.error is None


class Timer:
    """Adds up seconds per stage."""

    def __init__(self, into: dict[str, float], result: ScanResult | None = None) -> None:
        self.into = into
        self.result = result  # whose ``stage`` says which stage runs now (what a failure is blamed on)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.result is not None:
            self.result.stage = name
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - start


def _most_probable(probs: dict[str, float] | None) -> str | None:
    return max(probs, key=probs.__getitem__) if probs else None


def _mask_labels(mask: NoduleMask | None) -> dict[str, dict[str, float]]:
    """The labels a segmenter gave with its mask (``resunet``'s texture head); a classifier that gives
    the same label replaces them."""
    return {TEXTURE: dict(mask.texture)} if mask is not None and mask.texture else {}


def _texture(labels: dict[str, dict[str, float]]) -> tuple[str, dict[str, float] | None]:
    probs = labels.get(TEXTURE)
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
    threshold: float = DEFAULT_THRESHOLD
    scheme: str = "fleischner2017"
    risk: str = "high"
    recipe: Recipe | None = field(default=None, repr=False, compare=False)  # how from_registry built it

    @classmethod
    def from_registry(
        cls,
        registry: Registry,
        detector: str | Detector,
        segmenter: str,
        classifiers: Sequence[str],
        *,
        device: str = "auto",
        precision: Precision = "fp32",
        batch_size: int = 16,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        weights: Mapping[str, Path] | None = None,
        local_rank: int | None = None,
        **options: Any,
    ) -> Pipeline:
        """Build the named components. Every factory receives the same :class:`RunOptions`, completed
        with its own settings (``settings[name or role]``) and weights (``weights[name or role]``, else
        the component's shipped default). Unknown names, settings and weights fail, with suggestions,
        before anything is built. ``detector`` may be a ready detector instead of a name, such as
        :class:`~lungtk.pipeline.given.GivenCandidates` (locations from a table). ``local_rank``: this
        process's number on its machine when several share it (torchrun's LOCAL_RANK, ``--nproc``): a
        device that resolves to ``cuda`` becomes ``cuda:local_rank`` (modulo the number of GPUs). The
        arguments are kept as :attr:`recipe`, from which another process builds the same pipeline."""
        base = RunOptions(device="cpu", precision=precision, batch_size=batch_size)  # validates numbers
        detector_spec = registry.get("detector", detector) if isinstance(detector, str) else _ready(detector)
        roles = {"detector": detector_spec, "segmenter": registry.get("segmenter", segmenter)}
        classifier_specs = [registry.get("classifier", c) for c in classifiers]
        twice = next((s.name for i, s in enumerate(classifier_specs) if s in classifier_specs[:i]), None)
        if twice is not None:  # its outputs would be computed and written twice, one over the other
            raise LungtkError(f"classifier '{twice}' is given twice; name each classifier once")
        everyone = [*roles.values(), *classifier_specs]
        roles_all = {**roles, **{f"classifier:{s.name}": s for s in classifier_specs}}
        if len(classifier_specs) == 1:
            roles_all["classifier"] = classifier_specs[0]
        per_settings = _per_component(settings or {}, roles_all, "--set")
        per_weights = _per_component(weights or {}, roles_all, "--weights")
        completed = {
            spec: spec.options_for(replace(base, weights=per_weights.get(spec)), per_settings.get(spec))
            for spec in everyone
        }  # settings and weights all checked before torch is imported or anything is built
        resolved = resolve_device(device, any(not spec.cpu_only for spec in everyone))
        if local_rank is not None and resolved == "cuda":
            resolved = _gpu_of(local_rank)
        supplied = None if isinstance(detector, str) else _supplied(detector)
        built: dict[ComponentSpec, Component] = {}
        for spec in everyone:
            if spec not in built:  # one instance when a component plays two roles
                run_on = "cpu" if spec.cpu_only else resolved
                given = supplied if spec is detector_spec else None
                built[spec] = _build(spec, replace(completed[spec], device=run_on), given)
        for spec, method in (
            (roles["detector"], "detect"),
            (roles["segmenter"], "segment"),
            *((s, "classify") for s in classifier_specs),
        ):
            check_built(built[spec], method)
        return cls(
            built[roles["detector"]],
            built[roles["segmenter"]],
            [built[s] for s in classifier_specs],
            device=resolved,
            batch_size=batch_size,
            recipe=Recipe(
                detector,
                segmenter,
                tuple(classifiers),
                device=device,
                precision=precision,
                batch_size=batch_size,
                settings={key: dict(value) for key, value in (settings or {}).items()},
                weights=dict(weights or {}),
                options=dict(options),
            ),
            **options,
        )

    @property
    def _detector_scores(self) -> bool:
        """Whether the detector's probabilities mean something (a table of clicks has none)."""
        return bool(getattr(self.detector.instance, "scored", True))

    @property
    def components(self) -> list[Component]:
        return [self.detector, self.segmenter, *self.classifiers]

    def describe(self) -> dict[str, Any]:
        return {
            "detector": self.detector.describe(),
            "segmenter": self.segmenter.describe(),
            "classifiers": [c.describe() for c in self.classifiers],
        }

    def analyse(self, ct: Volume, result: ScanResult) -> None:
        """Detect, segment, classify and measure ``ct``; fill ``result`` (rows sorted by probability).

        Each component's output is checked where it comes back (:mod:`lungtk.pipeline.contract`): an
        exception or an output that breaks the contract is a :class:`~lungtk.pipeline.contract.ScanError`
        naming the component and its distribution."""
        timer = Timer(result.timings, result)
        with timer.stage("detect"):
            with calling(self.detector, "detect", "detect"):
                got = as_list(self.detector.instance.detect(ct))
            candidates = sorted(check_candidates(got, ct, self.detector), key=lambda c: -float(c.probability))
        with timer.stage("segment"):
            masks: list[NoduleMask | None] = []
            for start in range(0, len(candidates), self.batch_size):
                batch = candidates[start : start + self.batch_size]
                with calling(self.segmenter, "segment", "segment"):
                    got = as_list(self.segmenter.instance.segment(ct, batch))
                masks.extend(check_masks(got, batch, ct, self.segmenter))
            findings = [Finding(c, m, _mask_labels(m)) for c, m in zip(candidates, masks, strict=True)]
        with timer.stage("classify"):
            for classifier in self.classifiers:
                with calling(classifier, "classify", "classify"):
                    got = as_list(classifier.instance.classify(ct, findings))
                labels = check_labels(got, findings, classifier)
                findings = [f.with_labels(lab) for f, lab in zip(findings, labels, strict=True)]
            rows = [self._row(ct, result.seriesuid, i, f) for i, f in enumerate(findings, start=1)]
        result.findings, result.rows = findings, rows

    def _row(self, ct: Volume, uid: str, index: int, finding: Finding) -> FindingRow:
        candidate = finding.candidate
        m = measure(ct, finding.mask) if finding.mask is not None else None
        has_mask = m is not None and m.volume_mm3 > 0
        texture, texture_probs = _texture(finding.labels)
        probability = finding_probability(
            candidate.probability, positive_probability(finding.labels, NODULE), self._detector_scores
        )
        malignancy = positive_probability(finding.labels, MALIGNANCY)
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
        with Timer(result.timings, result).stage("fleischner"):
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
        for row, finding in self.reported(result)[:MAX_LABEL]:
            if finding.mask is None or not finding.mask.mask.any():
                continue
            patch = finding.mask.mask.astype(np.uint8) * np.uint8(min(row.finding, MAX_LABEL))
            paste(labels, patch, finding.mask.start_in(ct_geometry), op="max")
        return labels

    def reported(self, result: ScanResult) -> list[tuple[FindingRow, Finding]]:
        """The findings at or above ``threshold`` (the report, the masks and the recommendation show these)."""
        return [
            (r, f)
            for r, f in zip(result.rows, result.findings, strict=True)
            if is_reported(r.probability, self.threshold)
        ]
