"""A pipeline's classifications against a data set's truth (``lungtk eval cls``).

Findings are matched to annotated nodules by LUNA16's rule (within the nodule's radius). Per task:

- ``nodule``: every finding is a case, a nodule when it hits one (findings on marks of
  annotations_excluded.csv are left out, as FROC leaves them out); the score is its probability;
- ``malignancy`` / ``texture`` / ``pathology``: every rated nodule that a finding hits is a case, with
  the hitting finding of highest probability; classes as training takes them
  (:func:`lungtk.train.data.sources.annotation_label`: malignant is a mean rating above 3 as seed 001,
  texture as :func:`lungtk.core.labels.texture_of_rating`);

and seed 001's end-to-end table (its own 0.7-diameter match, counting missed nodules too) when the
findings carry both a probability and a malignancy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lungtk.cls.metrics import (
    E2E_COLUMNS,
    E2E_ROWS,
    ClassificationReport,
    classification_report,
    end_to_end_table,
)
from lungtk.core import LungtkError
from lungtk.core.labels import (
    LUNA16_ID,
    LUNA16_PROBABILITY,
    LUNA16_XYZ,
    MALIGNANCY,
    NODULE,
    PATHOLOGY,
    SUBMISSION_COLUMNS,
    TASK_LABELS,
    TEXTURE,
    within_radius_matrix,
)
from lungtk.core.tables import read_header_and_table
from lungtk.core.validate import coordinate, probability
from lungtk.ct_io.datasets import Annotation
from lungtk.train.data.sources import annotation_label

TASKS = (NODULE, MALIGNANCY, TEXTURE, PATHOLOGY)
LABELLED = (TEXTURE, PATHOLOGY)  # tasks whose findings.csv column holds the most probable label


@dataclass(frozen=True)
class ScoredFinding:
    """One row of findings.csv: where, the nodule probability, P(malignant) and the texture label."""

    uid: str
    center_xyz: tuple[float, float, float]
    probability: float
    malignancy: float | None = None
    texture: str | None = None
    pathology: str | None = None


def read_findings(path: str | Path) -> list[ScoredFinding]:
    """A pipeline's findings.csv (or any table with LUNA16's submission columns; ``malignancy``,
    ``texture`` and ``pathology`` optional), every number checked where it enters."""
    header, rows = read_header_and_table(path, SUBMISSION_COLUMNS)
    found = []
    for row in rows:
        labelled = {}
        for task in LABELLED:
            value = row.get(task)
            if value and value not in TASK_LABELS[task]:
                raise LungtkError(f"{row.name(task)}: {value!r} is not one of {', '.join(TASK_LABELS[task])}")
            labelled[task] = value or None
        found.append(
            ScoredFinding(
                row.text(LUNA16_ID),
                tuple(row.number(c, coordinate) for c in LUNA16_XYZ),  # type: ignore[arg-type]
                row.number(LUNA16_PROBABILITY, probability),
                row.optional(MALIGNANCY, probability) if MALIGNANCY in header else None,
                **labelled,
            )
        )
    return found


def evaluate(
    findings: Sequence[ScoredFinding],
    annotations: Sequence[Annotation],
    excluded: Sequence[Annotation] = (),
    tasks: Sequence[str] = TASKS,
    *,
    bootstrap: int = 1000,
) -> dict[str, object]:
    """``{task: report dict}`` for each task the findings carry, plus ``end_to_end`` (seed 001's table).

    ``annotations``: the nodules (an annotation with ``is_nodule`` False, e.g. an LNDb non-nodule, counts as
    excluded); ``excluded``: marks whose findings are neither nodules nor not (annotations_excluded.csv).
    Scans are those of the findings and the annotations together; a nodule on a scan without findings
    counts as missed.
    """
    by_scan: dict[str, list[int]] = {}
    for i, f in enumerate(findings):
        by_scan.setdefault(f.uid, []).append(i)
    marks: dict[str, list[Annotation]] = {}
    for a in [*annotations, *(replace(e, is_nodule=False) for e in excluded)]:
        marks.setdefault(a.uid, []).append(a)
    nodule_truth: list[int] = []
    nodule_score: list[float] = []
    per_task: dict[str, tuple[list[int], list[int], list[float]]] = {t: ([], [], []) for t in TASKS[1:]}
    e2e = {row: dict.fromkeys(E2E_COLUMNS, 0) for row in E2E_ROWS}
    has_malignancy = all(f.malignancy is not None for f in findings) and bool(findings)
    for uid in sorted(set(by_scan) | set(marks)):
        rows = [findings[i] for i in by_scan.get(uid, [])]
        xyz = np.array([f.center_xyz for f in rows], float).reshape(-1, 3)
        prob = np.array([f.probability for f in rows], float)
        nodules = [a for a in marks.get(uid, []) if a.is_nodule]
        excluded = [a for a in marks.get(uid, []) if not a.is_nodule]
        hits = within_radius_matrix(xyz, [a.center_xyz for a in nodules], [a.diameter_mm for a in nodules])
        ignored = within_radius_matrix(
            xyz, [a.center_xyz for a in excluded], [a.diameter_mm for a in excluded]
        )
        counted = hits.any(1) | ~ignored.any(1)
        nodule_truth += hits.any(1)[counted].astype(int).tolist()
        nodule_score += prob[counted].tolist()
        for j, annotation in enumerate(nodules):
            if not hits[:, j].any():
                continue
            best = rows[int(np.flatnonzero(hits[:, j])[np.argmax(prob[hits[:, j]])])]
            for task, (truth, predicted, score) in per_task.items():
                klass = annotation_label(annotation, task)
                if klass < 0:
                    continue
                if task == MALIGNANCY and best.malignancy is not None:
                    truth.append(klass)
                    predicted.append(int(best.malignancy >= 0.5))
                    score.append(best.malignancy)
                elif task in LABELLED and getattr(best, task) in TASK_LABELS[task]:
                    truth.append(klass)
                    predicted.append(TASK_LABELS[task].index(getattr(best, task)))
        if has_malignancy:
            table = end_to_end_table(  # findings on excluded marks left out, as in the nodule task
                xyz[counted],
                prob[counted],
                np.array([f.malignancy for f in rows], float)[counted] if rows else [],
                [a.center_xyz for a in nodules],
                [a.diameter_mm for a in nodules],
                [annotation_label(a, MALIGNANCY) == 1 for a in nodules],
            )
            for row in E2E_ROWS:
                for column in E2E_COLUMNS:
                    e2e[row][column] += table[row][column]
    out: dict[str, object] = {}
    reports: dict[str, ClassificationReport] = {}
    if NODULE in tasks and nodule_truth:
        truth = np.array(nodule_truth)
        reports[NODULE] = classification_report(
            NODULE,
            TASK_LABELS[NODULE],
            truth,
            (np.array(nodule_score) >= 0.5).astype(int),
            nodule_score,
            bootstrap=bootstrap,
        )
    for task, (truth, predicted, score) in per_task.items():
        if task in tasks and truth:
            reports[task] = classification_report(
                task, TASK_LABELS[task], truth, predicted, score or None, bootstrap=bootstrap
            )
    if not reports:
        raise LungtkError(
            "no task to evaluate: the findings hit no rated nodule (is --truth the data set the scans came from?)"
        )
    out.update({task: report.as_dict() for task, report in reports.items()})
    if has_malignancy:
        out["end_to_end"] = e2e
    return out
