"""Read nodule tables (CSV, or the pipeline's findings.json) into patients, and score them.

Columns are found by header name, in any order: ``patient`` (or ``seriesuid``; optional, one patient
when absent), ``volume_mm3`` and/or ``diameter_mm``, ``texture``, and optionally ``solid_component_mm``,
``calcified``, ``risk``, ``nodule_prob`` (or ``probability``), ``age``, ``known_cancer``,
``immunocompromised``, ``screening``. A row with no texture and no size lists a patient without nodules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lungtk.core import LungtkError, equivalent_diameter, validate
from lungtk.core.tables import read_header_and_table
from lungtk.fleischner import guideline2017, lndb_score
from lungtk.fleischner.guideline2017 import Patient, Risk
from lungtk.fleischner.nodules import Nodule, parse_texture, round_mm, sphere_volume
from lungtk.fleischner.result import Recommendation

SCHEMES = ("fleischner2017", "lndb")
_PATIENT_COLUMNS = ("patient", "seriesuid")
_PROB_COLUMNS = ("nodule_prob", "probability")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}
_DEFAULT_PATIENT = "patient"


@dataclass
class Case:
    """One patient's nodules and what is known about the patient."""

    patient: str
    nodules: list[Nodule] = field(default_factory=list)
    risk: Risk | None = None
    info: Patient = field(default_factory=Patient)


# Plausibility limits for a nodule table (a nodule is at most a few centimetres; a chest ~ 50 cm).
MAX_NODULE_MM = 500.0
MAX_AGE = 150.0
# With only a volume, a solid part may be measured longer than the volume's equivalent diameter (a flat
# nodule), but not by this factor.
_SOLID_OVER_EQUIVALENT = 2.0


class _Row:
    """One input row with the file and line for error messages."""

    def __init__(self, values: Mapping[str, object], source: Path, line: int, unit: str = "line") -> None:
        self.values = {str(k).strip(): v for k, v in values.items() if k is not None}
        self.source, self.line, self.unit = source, line, unit

    def where(self, column: str | None = None) -> str:
        at = f"{self.source}: {self.unit} {self.line}"
        return f"{at}, column '{column}'" if column else at

    def fail(self, column: str, problem: str) -> LungtkError:
        return LungtkError(f"{self.where(column)}: {problem}")

    def text(self, *columns: str) -> tuple[str, str] | None:
        for column in columns:
            value = self.values.get(column)
            if isinstance(value, list | dict | bool):  # JSON gives more than text
                raise self.fail(column, f"{json.dumps(value)[:40]} is not text; give a name or an id")
            if value is not None and str(value).strip() != "":
                return column, str(value).strip()
        return None

    def number(self, column: str, check: validate.Check = validate.finite) -> float | None:
        """The cell through ``check`` (NaN / infinity never pass), or None when empty."""
        value = self.values.get(column)
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return check(value, self.where(column))

    def flag(self, column: str) -> bool | None:
        found = self.text(column)
        if found is None:
            return None
        word = found[1].lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise self.fail(column, f"{found[1]!r} is not yes/no (use true/false, yes/no or 1/0)")


def _size(value: object, what: str) -> float:
    return validate.in_range(
        value,
        what,
        0.0,
        MAX_NODULE_MM,
        low_open=True,
        expected=f"a positive size in mm up to {MAX_NODULE_MM:g} (leave the cell empty if unknown)",
    )


def _volume(value: object, what: str) -> float:
    high = sphere_volume(MAX_NODULE_MM)
    return validate.in_range(
        value,
        what,
        0.0,
        high,
        low_open=True,
        expected=f"a positive volume in mm3 up to {high:.3g} (leave the cell empty if unknown)",
    )


def _solid_part(value: object, what: str) -> float:
    return validate.non_negative(value, what, limit=MAX_NODULE_MM)


def _age(value: object, what: str) -> float:
    return validate.in_range(value, what, 0.0, MAX_AGE, expected=f"an age in years from 0 to {MAX_AGE:g}")


def _texture(row: _Row) -> object:
    value = row.values.get("texture")
    if isinstance(value, Mapping):  # the pipeline's texture probabilities: take the likeliest
        if not value:
            return None
        where = row.where("texture")
        scores = {str(k): validate.probability(v, f"{where} {k!r}") for k, v in value.items()}
        return max(scores, key=lambda k: scores[k])
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int | float)):
        raise row.fail(
            "texture", f"{value!r} is not a texture; use solid, part-solid, ground-glass or a 1-5 rating"
        )
    return value


def _nodule(row: _Row, index: int) -> Nodule | None:
    texture_value = _texture(row)
    diameter = row.number("diameter_mm", _size)
    volume = row.number("volume_mm3", _volume)
    has_texture = texture_value is not None and str(texture_value).strip() != ""
    if not has_texture and diameter is None and volume is None:
        return None  # a patient listed without nodules
    if not has_texture:
        raise row.fail("texture", "is empty; give solid, part-solid, ground-glass or a 1-5 rating")
    try:
        texture = parse_texture(
            texture_value if isinstance(texture_value, float | int) else str(texture_value)
        )
    except ValueError as exc:
        raise row.fail("texture", str(exc)) from None
    if diameter is None and volume is None:
        raise LungtkError(f"{row.where()}: needs a diameter_mm or a volume_mm3")
    solid = row.number("solid_component_mm", _solid_part)
    if solid is not None:
        if diameter is not None and round_mm(solid) > round_mm(diameter):
            raise row.fail(
                "solid_component_mm",
                f"a solid part of {solid:g} mm is larger than the nodule ({diameter:g} mm); check the columns",
            )
        if (
            diameter is None
            and volume is not None
            and solid > _SOLID_OVER_EQUIVALENT * equivalent_diameter(volume)
        ):
            raise row.fail(
                "solid_component_mm",
                f"a solid part of {solid:g} mm does not fit in a nodule of {volume:g} mm3; check the columns",
            )
    prob_column = next((c for c in _PROB_COLUMNS if row.text(c)), None)
    probability = row.number(prob_column, validate.probability) if prob_column else None
    found_id = row.text("id", "finding", "nodule")
    return Nodule(
        texture=texture,
        diameter_mm=diameter,
        volume_mm3=volume,
        solid_component_mm=solid,
        calcified=bool(row.flag("calcified")),
        probability=probability,
        id=found_id[1] if found_id else str(index),
    )


def _cases(rows: Iterable[_Row]) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    risk_seen: dict[str, tuple[Risk, _Row]] = {}
    for row in rows:
        found = row.text(*_PATIENT_COLUMNS)
        patient = found[1] if found else _DEFAULT_PATIENT
        case = cases.setdefault(patient, Case(patient))
        nodule = _nodule(row, len(case.nodules) + 1)
        if nodule is not None:
            case.nodules.append(nodule)
        if risk := row.text("risk"):
            try:
                case.risk = Risk(risk[1].lower())
            except ValueError:
                raise row.fail("risk", f"{risk[1]!r}: use low or high") from None
            earlier = risk_seen.setdefault(patient, (case.risk, row))
            if earlier[0] is not case.risk:
                raise row.fail(
                    "risk",
                    f"patient {patient} is {case.risk.value} risk here but {earlier[0].value} risk on "
                    f"{earlier[1].unit} {earlier[1].line}; give one risk per patient",
                )
        age, cancer = row.number("age", _age), row.flag("known_cancer")
        immuno, screening = row.flag("immunocompromised"), row.flag("screening")
        if any(v is not None for v in (age, cancer, immuno, screening)):
            info = case.info
            case.info = Patient(
                age if age is not None else info.age,
                cancer if cancer is not None else info.known_cancer,
                immuno if immuno is not None else info.immunocompromised,
                screening if screening is not None else info.screening,
            )
    return cases


def read_cases(path: str | os.PathLike[str]) -> dict[str, Case]:
    """Patients (in order of first appearance) from a nodule CSV or a findings.json."""
    path = Path(path)
    if path.is_dir():
        raise LungtkError(f"{path}: is a folder; give a nodule CSV or a findings.json")
    if not path.is_file():
        raise LungtkError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        return _cases(_json_rows(path))
    header, table = read_header_and_table(path)
    if "texture" not in header:
        raise LungtkError(f"{path}: no column 'texture' (the header has {', '.join(header) or 'nothing'})")
    if "volume_mm3" not in header and "diameter_mm" not in header:
        raise LungtkError(f"{path}: needs a 'volume_mm3' or a 'diameter_mm' column")
    return _cases(_Row(r.values, path, r.line) for r in table)


def _json_rows(path: Path) -> list[_Row]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise LungtkError(f"{path}: not valid JSON ({exc})") from None
    except ValueError as exc:  # NaN / Infinity
        raise LungtkError(f"{path}: not valid JSON ({exc}); give numbers or null") from None
    items = data.get("findings") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise LungtkError(f"{path}: expected a list of findings (or an object with a 'findings' list)")
    return [_Row(item, path, i, "finding") for i, item in enumerate(items, start=1)]


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def recommend_cases(
    cases: Mapping[str, Case],
    scheme: str = "fleischner2017",
    risk: Risk | str = Risk.HIGH,
    *,
    min_probability: float = 0.5,
) -> list[Recommendation]:
    """Score every patient. Findings with a nodule probability below ``min_probability`` are left out
    (the LNDb scheme also reports category probabilities from them)."""
    if scheme not in SCHEMES:
        raise LungtkError(f"unknown scheme {scheme!r}; choose {' or '.join(SCHEMES)}")
    min_probability = validate.probability(min_probability, "the minimum nodule probability")
    results = []
    for case in cases.values():
        kept = [n for n in case.nodules if n.probability is None or n.probability >= min_probability]
        if scheme == "lndb":
            result = lndb_score.score(kept, patient_id=case.patient)
            if any(n.probability is not None for n in case.nodules):
                findings = [
                    lndb_score.UncertainFinding.certain(n, 1.0 if n.probability is None else n.probability)
                    for n in case.nodules
                    if not n.calcified
                ]
                result.probabilities = [round(float(p), 6) for p in lndb_score.probabilities(findings)]
        else:
            result = guideline2017.recommend(
                kept, case.risk or risk, patient_id=case.patient, patient=case.info
            )
        if len(kept) < len(case.nodules):
            result.notes.append(
                f"{len(case.nodules) - len(kept)} finding(s) below nodule probability {min_probability} left out."
            )
        results.append(result)
    return results


_LABEL_ID_COLUMNS = ("patient", "seriesuid", "LNDbID")
_LABEL_COLUMNS = ("category", "Fleischner", "fleischner")


def read_labels(path: str | os.PathLike[str]) -> dict[str, int]:
    """Reference categories: patient (or ``seriesuid`` / LNDb's ``LNDbID``) -> category 0-3 (or LNDb's
    ``Fleischner`` column) from a CSV."""
    path = Path(path)
    header, rows = read_header_and_table(path)
    id_col = next((c for c in _LABEL_ID_COLUMNS if c in header), None)
    cat_col = next((c for c in _LABEL_COLUMNS if c in header), None)
    if id_col is None or cat_col is None:
        raise LungtkError(
            f"{path}: needs a 'patient' and a 'category' column (or LNDb's LNDbID,Fleischner); the header "
            f"has {', '.join(header) or 'nothing'}"
        )
    labels: dict[str, int] = {}
    first: dict[str, int] = {}
    for row in rows:
        text = row.get(cat_col)
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if value not in (0, 1, 2, 3):
            raise LungtkError(f"{row.name(cat_col)}: {text!r} is not a category 0-3")
        patient = row.text(id_col)
        if patient in labels and labels[patient] != int(value):
            raise LungtkError(
                f"{row.name(cat_col)}: patient {patient} is category {int(value)} here but "
                f"{labels[patient]} on line {first[patient]}; give one category per patient"
            )
        labels[patient] = int(value)
        first.setdefault(patient, row.line)
    if not labels:
        raise LungtkError(f"{path}: no labelled patients (the table has a header but no rows)")
    return labels


def cases_from_annotations(scans: Iterable[str], annotations: Iterable[object]) -> dict[str, Case]:
    """Patients from data-set annotations (duck-typed: ``uid``, ``is_nodule``, ``texture``,
    ``volume_mm3``, ``finding``, as ``lungtk.ct_io.datasets`` gives them): nodules with a texture and a
    volume; every scan is a patient, with or without nodules."""
    cases = {uid: Case(uid) for uid in scans}
    for a in annotations:
        texture, volume = getattr(a, "texture", None), getattr(a, "volume_mm3", None)
        if getattr(a, "is_nodule", True) and texture is not None and volume is not None:
            uid = a.uid  # type: ignore[attr-defined]
            cases.setdefault(uid, Case(uid)).nodules.append(
                Nodule(parse_texture(texture), volume_mm3=volume, id=str(getattr(a, "finding", "")))
            )
    return cases
