"""``lungtk fleischner``: follow-up recommendations (2017 guideline or LNDb scoring), the learned
predictor of seed 000, and agreement with reference categories."""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lungtk.cli.console import checked, note, stdout, warning
from lungtk.core import LungtkError, validate, write_text

if TYPE_CHECKING:
    from lungtk.fleischner import Case, Recommendation

app = typer.Typer(
    help="Follow-up recommendations from nodule tables: the 2017 Fleischner guideline, the LNDb scoring, "
    "or a learned Random Forest.",
    no_args_is_help=True,
)


class Scheme(StrEnum):
    fleischner2017 = "fleischner2017"
    lndb = "lndb"


class RiskLevel(StrEnum):
    low = "low"
    high = "high"


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


NodulesArg = Annotated[
    Path,
    typer.Argument(
        help="Nodule CSV (columns by name: patient, volume_mm3 and/or diameter_mm, texture, optional "
        "solid_component_mm, calcified, risk, nodule_prob, age, known_cancer, immunocompromised, screening) "
        "or the pipeline's findings.json.",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format (stdout).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")]


def _emit(results: list[Recommendation], fmt: Format, out: Path | None) -> None:
    rows = [r.as_dict() for r in results]
    if fmt is Format.json:
        text = json.dumps(rows, indent=2) + "\n"
    elif fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        with_p = any(r.probabilities for r in results)
        writer.writerow(
            ["patient", "scheme", "category", "recommendation", "driver", "nodules", "risk", "notes"]
            + (["p0", "p1", "p2", "p3"] if with_p else [])
        )
        for r in results:
            writer.writerow(
                [
                    r.patient,
                    r.scheme,
                    r.category,
                    r.recommendation,
                    r.driver or "",
                    r.nodules,
                    r.risk or "",
                    " ".join(r.notes),
                ]
                + ([f"{p:.6f}" for p in (r.probabilities or [])] if with_p else [])
            )
        text = buffer.getvalue()
    else:
        if out is not None:
            raise LungtkError("--out writes json or csv; pick one with --format")
        _print_table(results)
        return
    if out is None:
        print(text, end="")
    else:
        write_text(out, text)
        note(f"wrote {len(results)} recommendation(s) to {out}")


def _print_table(results: list[Recommendation]) -> None:
    from rich.table import Table

    table = Table("patient", "category", "recommendation", "driver", "nodules", "notes")
    for r in results:
        table.add_row(
            r.patient, str(r.category), r.recommendation, r.driver or "-", str(r.nodules), " ".join(r.notes)
        )
    stdout.print(table)


@app.command("recommend")
def recommend(
    nodules: NodulesArg,
    scheme: Annotated[Scheme, typer.Option("--scheme", help="Rules to apply.")] = Scheme.fleischner2017,
    risk: Annotated[
        RiskLevel, typer.Option("--risk", help="Patient risk where the table has no `risk` column.")
    ] = RiskLevel.high,
    min_prob: Annotated[
        float,
        typer.Option(
            "--min-prob",
            help="Leave out findings whose nodule_prob is below this (0 to 1).",
            callback=checked(validate.probability),
        ),
    ] = 0.5,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Recommend follow-up per patient; the most suspicious nodule drives it (`driver`: the row's `id`
    column, else its 1-based number within the patient).

    Categories use the LNDb scale: 0 no routine follow-up, 1 CT at 6-12 months, 2 CT at 3-6 months,
    3 CT at 3 months / PET-CT / tissue sampling.
    """
    from lungtk.fleischner import read_cases, recommend_cases

    results = recommend_cases(read_cases(nodules), scheme.value, risk.value, min_probability=min_prob)
    _emit(results, fmt, out)


def _inputs(
    nodules: Path | None, labels: Path | None, lndb: Path | None
) -> tuple[dict[str, Case], dict[str, int]]:
    from lungtk.fleischner import read_cases
    from lungtk.fleischner.tables import cases_from_annotations, read_labels

    if lndb is not None:
        if nodules is not None or labels is not None:
            raise LungtkError("give either --lndb or a nodule table with --labels, not both")
        from lungtk.ct_io.datasets import load_lndb

        index = load_lndb(lndb)
        references = {s.uid: s.fleischner for s in index if s.fleischner is not None}
        return cases_from_annotations(index.scans, index.annotations), references
    if nodules is None or labels is None:
        raise LungtkError("give a nodule table and --labels (patient,category), or --lndb FOLDER")
    cases, reference = read_cases(nodules), read_labels(labels)
    _check_patients(cases, reference, nodules, labels)
    return cases, reference


def _check_patients(cases: dict[str, Case], reference: dict[str, int], nodules: Path, labels: Path) -> None:
    """The nodule table and the labels must be about the same patients: a labelled patient without rows
    has no nodules (that is allowed), but labels that name none of the table's patients are the wrong
    file, and the table's unlabelled patients are left out (said, not silent)."""
    if cases and reference and not set(cases) & set(reference):
        raise LungtkError(
            f"{labels}: none of its {len(reference)} patient(s) appears in {nodules} (the labels name e.g. "
            f"{next(iter(reference))!r}, the table e.g. {next(iter(cases))!r}); give the labels of the "
            "table's patients"
        )
    unlabelled = [p for p in cases if p not in reference]
    if unlabelled:
        shown = ", ".join(repr(p) for p in unlabelled[:3]) + (" ..." if len(unlabelled) > 3 else "")
        warning(
            f"{len(unlabelled)} patient(s) of {nodules} have no label in {labels} and are left out: {shown}"
        )


LabelsOpt = Annotated[Path | None, typer.Option("--labels", help="CSV of patient,category (reference).")]
LndbOpt = Annotated[
    Path | None,
    typer.Option("--lndb", help="An LNDb folder: merged reader findings and trainFleischner.csv."),
]
OptionalNodules = Annotated[Path | None, typer.Argument(help="Nodule CSV or findings.json (see recommend).")]


@app.command("train")
def train(
    nodules: OptionalNodules = None,
    labels: LabelsOpt = None,
    lndb: LndbOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to save the model (JSON).")] = Path(
        "fleischner-forest.json"
    ),
    trees: Annotated[
        int,
        typer.Option(
            "--trees", help="Number of trees (1 to 10000).", callback=checked(validate.count, high=10000)
        ),
    ] = 200,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed (0 to 2**32-1).", callback=checked(validate.seed))
    ] = 0,
) -> None:
    """Fit seed 000's Random Forest on the 6-count patient features (nodules per volume class and texture).

    The model is plain JSON (the trees' splits and leaves): loading one never runs code from it.
    """
    from lungtk.fleischner.forest import FleischnerForest

    cases, reference = _inputs(nodules, labels, lndb)
    forest = FleischnerForest.fit(
        {p: c.nodules for p, c in cases.items()}, reference, n_estimators=trees, seed=seed
    )
    forest.save(out)
    note(f"trained on {len(reference)} patients (categories {sorted(set(reference.values()))}); saved {out}")


def _forest_results(cases: dict[str, Case], model: Path) -> list[Recommendation]:
    from lungtk.fleischner.forest import FleischnerForest

    return FleischnerForest.load(model).recommend({p: c.nodules for p, c in cases.items()})


@app.command("predict")
def predict(
    nodules: NodulesArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="A model from `lungtk fleischner train`.")],
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Predict follow-up categories with a trained forest (and their probabilities)."""
    from lungtk.fleischner import read_cases

    _emit(_forest_results(read_cases(nodules), model), fmt, out)


@app.command("eval")
def evaluate(
    nodules: OptionalNodules = None,
    labels: LabelsOpt = None,
    lndb: LndbOpt = None,
    scheme: Annotated[Scheme, typer.Option("--scheme", help="Rules to evaluate.")] = Scheme.lndb,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Evaluate a trained forest instead.")
    ] = None,
    risk: Annotated[RiskLevel, typer.Option("--risk")] = RiskLevel.high,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Agreement with reference categories: Fleiss-Cohen (quadratic) kappa, balanced accuracy, confusion."""
    from lungtk.fleischner import balanced_accuracy, confusion_matrix, recommend_cases, weighted_kappa

    cases, reference = _inputs(nodules, labels, lndb)
    missing = [p for p in reference if p not in cases]
    from lungtk.fleischner import Case

    cases = {**cases, **{p: Case(p) for p in missing}}  # labelled patients without rows have no nodules
    results = _forest_results(cases, model) if model else recommend_cases(cases, scheme.value, risk.value)
    predicted = {r.patient: r.category for r in results}
    ids = sorted(reference)
    truth, guess = [reference[p] for p in ids], [predicted[p] for p in ids]
    summary = {
        "predictor": f"model {model}" if model else scheme.value,
        "patients": len(ids),
        "kappa_quadratic": round(weighted_kappa(truth, guess), 4),
        "balanced_accuracy": round(balanced_accuracy(truth, guess), 4),
        "confusion_matrix": confusion_matrix(truth, guess).tolist(),
    }
    if as_json:
        stdout.print_json(json.dumps(summary))
        return
    print(f"predictor          {summary['predictor']}")
    print(f"patients           {summary['patients']}")
    print(f"kappa (quadratic)  {summary['kappa_quadratic']:.4f}")
    print(f"balanced accuracy  {summary['balanced_accuracy']:.4f}")
    print("confusion (rows = reference 0-3, columns = predicted 0-3)")
    for row in summary["confusion_matrix"]:  # type: ignore[union-attr]
        print("  " + " ".join(f"{v:5d}" for v in row))
