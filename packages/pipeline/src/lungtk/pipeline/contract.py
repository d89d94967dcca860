"""The component contract, checked where each component's output comes back to the pipeline.

A detector returns :class:`~lungtk.core.Candidate` objects inside the scan, a segmenter one
:class:`~lungtk.core.NoduleMask` (or ``None``) per candidate on the scan's voxel grid, a classifier one
``{task: {label: probability}}`` per finding with probabilities in 0..1. Anything else - an exception, NaN,
``None``, the wrong type or count, a place outside the scan - becomes a :class:`ScanError` that names the
scan's stage, the component and the distribution that registered it; the run records it and goes on.
"""

from __future__ import annotations

import math
import numbers
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from lungtk.core import Candidate, Finding, Geometry, LungtkError, NoduleMask, Volume
from lungtk.core.labels import TASK_LABELS, TEXTURE, TEXTURES

if TYPE_CHECKING:
    from lungtk.pipeline.engine import Component

MAX_MESSAGE = 300  # characters of a component's own exception message kept in the one-line error
SUM_TOLERANCE = 1e-3  # a task's exclusive labels may sum to a little over 1 (rounding)
SPACING_RTOL = 1e-3  # a mask's voxels must be the scan's voxels
EDGE_VOXELS = 1.0  # a candidate's centre may lie this many voxels beyond the scan's edge voxels


class ScanError(LungtkError):
    """One scan could not be analysed; the run records it (with the stage and the component to blame)
    and goes on with the other scans."""

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        component: Component | None = None,
        distribution: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.component = component
        self.distribution = distribution or (component.spec.distribution if component else None)
        self.details = details  # a traceback, for a component that raised

    def as_record(self) -> dict[str, Any]:
        spec = self.component.spec if self.component is not None else None
        return {
            "stage": self.stage,
            "kind": spec.kind if spec else None,
            "component": spec.name if spec else None,
            "distribution": self.distribution,
            "version": spec.version if spec else None,
        }


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (shortened), for an exception a component raised."""
    full = str(exc)
    if isinstance(exc, LungtkError) and callable(getattr(exc, "for_command", None)):
        full = exc.for_command(())  # advice that names a command-line option does not fit here
    text = full.strip().splitlines()[0].strip() if full.strip() else ""
    if isinstance(exc, LungtkError):  # written for the user: kept whole
        return text or type(exc).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def broke(component: Component, stage: str, problem: str) -> ScanError:
    """The error for an output that breaks the contract."""
    return ScanError(
        f"{component.label} {component.verb} {problem}; {component.advice}", stage=stage, component=component
    )


@contextmanager
def calling(component: Component, stage: str, method: str) -> Iterator[None]:
    """Turn whatever a component raises into a :class:`ScanError` that names it (Ctrl-C still stops)."""
    try:
        yield
    except ScanError:
        raise
    except LungtkError as exc:  # the component's own one-line message for its user
        raise ScanError(f"{component.label}: {one_line(exc)}", stage=stage, component=component) from exc
    except (Exception, SystemExit) as exc:
        raise ScanError(
            f"{component.label} failed in {method}(): {one_line(exc)}; {component.advice}",
            stage=stage,
            component=component,
            details="".join(traceback.format_exception(exc)),
        ) from exc


def as_list(got: Any) -> Any:
    """A component's sequence as a list (a generator runs here, inside :func:`calling`); anything else
    is returned as it is for the checks to name."""
    if isinstance(got, str | bytes | Mapping | np.ndarray) or got is None:
        return got
    try:
        items = iter(got)
    except TypeError:  # not a sequence at all: the checks say what it is
        return got
    return list(items)  # what a generator raises is the component's failure


def _kind_of(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _list_of(got: Any, what: str, component: Component, stage: str, count: int | None = None) -> list[Any]:
    if not isinstance(got, list):
        raise broke(component, stage, f"{_kind_of(got)} instead of a list of {what}")
    if count is not None and len(got) != count:
        raise broke(component, stage, f"{len(got)} result(s) for {count} input(s); it must return one each")
    return got


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (bool and strings are not), else ``None``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | np.floating | np.integer):
        return None
    return float(value)


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def scan_box_mm(ct: Volume) -> str:
    """The scan's extent in patient mm, for messages: x a..b, y a..b, z a..b."""
    shape = np.asarray(np.shape(ct.array))
    corners = np.array(
        [[i, r, c] for i in (0, shape[0] - 1) for r in (0, shape[1] - 1) for c in (0, shape[2] - 1)]
    )
    xyz = ct.geometry.irc2xyz(corners)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    return ", ".join(f"{a} {lo[k]:.1f}..{hi[k]:.1f}" for k, a in enumerate("xyz"))


def _inside(ct: Volume, xyz: Sequence[float], margin: float) -> bool:
    irc = ct.geometry.xyz2irc(np.asarray(xyz, dtype=np.float64), continuous=True)
    shape = np.asarray(np.shape(ct.array), dtype=np.float64)
    return bool(np.all(irc >= -margin) and np.all(irc <= shape - 1 + margin))


def _extent_mm(ct: Volume) -> float:
    shape = np.asarray(np.shape(ct.array), dtype=np.float64)
    return float(np.linalg.norm(shape * ct.geometry.spacing_irc))


def check_candidates(got: Any, ct: Volume, component: Component) -> list[Candidate]:
    """The detector's output: a list of Candidate with finite centres inside the scan, diameters from 0
    to the scan's size and probabilities in 0..1."""
    stage = "detect"
    items = _list_of(got, "Candidate", component, stage)
    extent = _extent_mm(ct)
    for n, c in enumerate(items, start=1):
        what = f"candidate {n}"
        if not isinstance(c, Candidate):
            raise broke(component, stage, f"{_kind_of(c)} as {what}, not a lungtk.core.Candidate")
        centre = c.center_xyz
        if not isinstance(centre, tuple) or len(centre) != 3 or any(_real(v) is None for v in centre):
            raise broke(component, stage, f"{what} with center_xyz {centre!r}, not 3 numbers (mm)")
        if not all(math.isfinite(float(v)) for v in centre):
            raise broke(component, stage, f"{what} with center_xyz {_fmt(centre)}, not 3 finite numbers (mm)")
        probability = _real(c.probability)
        if probability is None or not 0.0 <= probability <= 1.0:
            raise broke(component, stage, f"{what} with probability {c.probability!r}, not a number in 0..1")
        diameter = _real(c.diameter_mm)
        if diameter is None or not 0.0 <= diameter <= extent:
            raise broke(
                component,
                stage,
                f"{what} with diameter_mm {c.diameter_mm!r}, not a number from 0 to the scan's {extent:.0f} mm",
            )
        if c.box_mm is not None:
            box = c.box_mm
            if (
                not isinstance(box, tuple)
                or len(box) != 6
                or any(_real(v) is None or not math.isfinite(float(v)) for v in box)
                or any(box[k] > box[k + 3] for k in range(3))
            ):
                raise broke(
                    component, stage, f"{what} with box_mm {box!r}, not 6 finite numbers x0,y0,z0 <= x1,y1,z1"
                )
        if not _inside(ct, centre, EDGE_VOXELS):
            raise broke(
                component,
                stage,
                f"{what} at {_fmt(centre)} mm, outside the scan ({scan_box_mm(ct)} mm)",
            )
    return items


def _check_texture(probabilities: Any, where: str, component: Component, stage: str) -> None:
    """Texture probabilities (``where``: after what they came, e.g. ``for finding 2``)."""
    if probabilities is None:
        return
    if not isinstance(probabilities, Mapping):
        raise broke(
            component, stage, f"texture {_kind_of(probabilities)} {where}, not {{label: probability}}"
        )
    for label, p in probabilities.items():
        if label not in TEXTURES:
            raise broke(component, stage, f"texture label {label!r} {where}; use {', '.join(TEXTURES)}")
        value = _real(p)
        if value is None or not 0.0 <= value <= 1.0:
            raise broke(component, stage, f"texture.{label} = {p!r} {where}, not a probability in 0..1")


def check_masks(
    got: Any, candidates: Sequence[Candidate], ct: Volume, component: Component
) -> list[NoduleMask | None]:
    """The segmenter's output for one batch: one NoduleMask (or None) per candidate, 3D, boolean, on the
    scan's voxel grid, and overlapping the scan when not empty."""
    stage = "segment"
    items = _list_of(got, "NoduleMask", component, stage, len(candidates))
    scan: Geometry = ct.geometry
    shape = np.asarray(np.shape(ct.array))
    for n, m in enumerate(items, start=1):
        where = f"for candidate {n} of its batch"
        if m is None:
            continue
        if not isinstance(m, NoduleMask):
            raise broke(component, stage, f"{_kind_of(m)} {where}, not a lungtk.core.NoduleMask")
        mask = m.mask
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 3:
            raise broke(component, stage, f"a mask {where} that is not a 3D boolean array")
        if not isinstance(m.geometry, Geometry):
            raise broke(component, stage, f"a mask {where} whose geometry is {_kind_of(m.geometry)}")
        if not np.allclose(m.geometry.spacing, scan.spacing, rtol=SPACING_RTOL, atol=0) or not np.allclose(
            m.geometry.direction, scan.direction, atol=1e-4
        ):
            raise broke(
                component,
                stage,
                f"a mask {where} with spacing {_fmt(m.geometry.spacing)} mm, not on the scan's grid "
                f"(spacing {_fmt(scan.spacing)} mm); resample masks onto the scan",
            )
        _check_texture(m.texture, f"in the mask {where}", component, stage)
        if not mask.any():
            continue
        first = scan.xyz2irc(m.geometry.origin, continuous=True)
        if not np.all(np.isfinite(first)) or np.any(np.abs(first) > 1e9):
            raise broke(
                component, stage, f"a mask {where} at {_fmt(m.geometry.origin)} mm, far outside the scan"
            )
        start = np.round(first).astype(np.int64)
        if np.any(start + np.asarray(mask.shape) <= 0) or np.any(start >= shape):
            raise broke(
                component,
                stage,
                f"a mask {where} whose voxels lie outside the scan (its corner at {_fmt(m.geometry.origin)} "
                f"mm; the scan: {scan_box_mm(ct)} mm)",
            )
    return items


def check_labels(
    got: Any, findings: Sequence[Finding], component: Component
) -> list[dict[str, dict[str, float]]]:
    """The classifier's output: one ``{task: {label: probability}}`` per finding, names non-empty
    strings, probabilities numbers in 0..1 (a task's exclusive labels summing to at most 1, texture
    labels from the known ones). Returns the labels with plain floats."""
    stage = "classify"
    items = _list_of(got, "{task: {label: probability}}", component, stage, len(findings))
    checked = []
    for n, labels in enumerate(items, start=1):
        where = f"for finding {n}"
        if not isinstance(labels, Mapping):
            raise broke(component, stage, f"{_kind_of(labels)} {where}, not {{task: {{label: probability}}}}")
        clean: dict[str, dict[str, float]] = {}
        for task, distribution in labels.items():
            if not isinstance(task, str) or not task.strip():
                raise broke(component, stage, f"a task name {task!r} {where}; use a non-empty string")
            if not isinstance(distribution, Mapping) or not distribution:
                raise broke(
                    component,
                    stage,
                    f"{_kind_of(distribution)} for task {task!r} {where}, not {{label: probability}}",
                )
            probs: dict[str, float] = {}
            for label, p in distribution.items():
                if not isinstance(label, str) or not label.strip():
                    raise broke(component, stage, f"a label name {label!r} in task {task!r} {where}")
                value = _real(p)
                if value is None or not 0.0 <= value <= 1.0:
                    raise broke(
                        component, stage, f"{task}.{label} = {p!r} {where}, not a probability in 0..1"
                    )
                probs[label] = value
            if task == TEXTURE:
                _check_texture(probs, where, component, stage)
            if task in TASK_LABELS and sum(probs.values()) > 1.0 + SUM_TOLERANCE:
                raise broke(
                    component,
                    stage,
                    f"task {task!r} {where} with probabilities summing to {sum(probs.values()):.4g}; its labels "
                    "exclude each other, so they sum to at most 1",
                )
            clean[task] = probs
        checked.append(clean)
    return checked


def check_built(component: Component, method: str) -> None:
    """A factory must return an object with the role's method."""
    if not callable(getattr(component.instance, method, None)):
        raise LungtkError(
            f"{component.label}: its factory returned {_kind_of(component.instance)}, which has no "
            f"{method}() method; {component.advice}"
        )
