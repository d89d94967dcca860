"""A pipeline's classifications against a data set's truth (``lungtk eval cls``).

Findings are matched to annotated nodules by LUNA16's rule (within the nodule's radius). Per task:

- ``nodule``: every finding is a case, a nodule when it hits one (findings on marks of
  annotations_excluded.csv are left out, as FROC leaves them out); the score is its probability;
- ``malignancy`` / ``texture``: every rated nodule that a finding hits is a case, with the hitting finding
  of highest probability; malignant means a mean rating above 3 (seed 001), texture as
  :func:`lungtk.core.labels.texture_of_rating`;

and seed 001's end-to-end table (its own 0.7-diameter match, counting missed nodules too) when the
findings carry both a probability and a malignancy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    MALIGNANCY,
    NODULE,
    TASK_LABELS,
    TEXTURE,
    TEXTURES,
    texture_of_rating,
    within_radius_matrix,
)
from lungtk.ct_io.datasets import Annotation

TASKS = (NODULE, MALIGNANCY, TEXTURE)


@dataclass(frozen=True)
class ScoredFinding:
    """One row of findings.csv: where, the nodule probability, P(malignant) and the texture label."""

    uid: str
    center_xyz: tuple[float, float, float]
    probability: float
    malignancy: float | None = None
    texture: str | None = None


def _truth_class(annotation: Annotation, task: str) -> int:
    if task == MALIGNANCY:
        if annotation.malignant is not None:
            return int(annotation.malignant)
        return -1 if annotation.malignancy is None else int(annotation.malignancy > 3)
    return -1 if annotation.texture is None else TEXTURES.index(texture_of_rating(annotation.texture))


def evaluate(
    findings: Sequence[ScoredFinding],
    annotations: Sequence[Annotation],
    tasks: Sequence[str] = TASKS,
    *,
    bootstrap: int = 1000,
) -> dict[str, object]:
    """``{task: report dict}`` for each task the findings carry, plus ``end_to_end`` (seed 001's table).

    ``annotations``: every scan's marks (``is_nodule`` False: excluded findings). Scans are those of the
    findings and the annotations together; a nodule on a scan without findings counts as missed.
    """
    by_scan: dict[str, list[int]] = {}
    for i, f in enumerate(findings):
        by_scan.setdefault(f.uid, []).append(i)
    marks: dict[str, list[Annotation]] = {}
    for a in annotations:
        marks.setdefault(a.uid, []).append(a)
    nodule_truth: list[int] = []
    nodule_score: list[float] = []
    per_task: dict[str, tuple[list[int], list[int], list[float]]] = {
        t: ([], [], []) for t in (MALIGNANCY, TEXTURE)
    }
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
                klass = _truth_class(annotation, task)
                if klass < 0:
                    continue
                if task == MALIGNANCY and best.malignancy is not None:
                    truth.append(klass)
                    predicted.append(int(best.malignancy >= 0.5))
                    score.append(best.malignancy)
                elif task == TEXTURE and best.texture in TEXTURES:
                    truth.append(klass)
                    predicted.append(TEXTURES.index(best.texture))
        if has_malignancy:
            table = end_to_end_table(
                xyz,
                prob,
                [f.malignancy for f in rows],
                [a.center_xyz for a in nodules],
                [a.diameter_mm for a in nodules],
                [_truth_class(a, MALIGNANCY) == 1 for a in nodules],
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
