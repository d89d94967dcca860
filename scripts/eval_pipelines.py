"""The README's accuracy table: whole pipelines (presets) side by side on phantoms never used for training.

    uv run python scripts/eval_pipelines.py PHANTOMS OUT [--preset classical --preset learned]

PHANTOMS is a `lungtk phantom` folder (e.g. `lungtk phantom --out ph9100 --n 12 --seed 9100`); OUT gets
one folder per preset and run. Every figure comes from lungtk's own commands, run here as a user would:

1. `lungtk pipeline run PHANTOMS/subset0 --preset P`: the whole pipeline at the preset's report threshold.
   - FROC / CPM: `lungtk eval froc` on findings.csv (every candidate, with its probability).
   - Fleischner agreement: `lungtk fleischner eval findings.json --labels ... --scheme fleischner2017`
     against the phantom's own 2017 categories (fleischner.csv, high risk): the share of scans given the
     right category, and the quadratic weighted kappa.
2. `lungtk pipeline run PHANTOMS/subset0 --preset P --candidates PHANTOMS/annotations.csv --threshold 0`:
   the segmenter and classifiers at the true centres.
   - Dice of the nodules of 5 mm or more (each phantom label against the predicted label overlapping it
     most, `lungtk.seg.metrics.evaluate_folders(per_label=True)`).
   - Texture accuracy and malignancy ROC AUC: `lungtk eval cls --task texture --task malignancy`.

Prints a Markdown table on stdout (progress on stderr) and writes OUT/table.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from eval_seg_phantoms import nodule_dice  # beside this script

MIN_DIAMETER_MM = 5.0


def lungtk(*args: object) -> str:
    command = [sys.executable, "-m", "lungtk.cli.main", *map(str, args)]
    print("$ lungtk " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"lungtk {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc.stdout


def dice_at_true_centres(run: Path, phantoms: Path) -> tuple[float, int]:
    scores = [d for n, d in nodule_dice(run, phantoms) if float(n["diameter_mm"]) >= MIN_DIAMETER_MM]
    return float(np.mean(scores)), len(scores)


def fleischner_labels(phantoms: Path, out: Path) -> Path:
    """The phantom's 2017 categories as the patient,category table `fleischner eval` reads."""
    rows = list(csv.DictReader((phantoms / "fleischner.csv").open(encoding="utf-8")))
    labels = out / "fleischner-labels.csv"
    labels.write_text(
        "patient,category\n" + "".join(f"{r['seriesuid']},{r['fleischner2017']}\n" for r in rows),
        encoding="utf-8",
    )
    return labels


def evaluate(preset: str, phantoms: Path, out: Path, labels: Path) -> dict[str, object]:
    scans = phantoms / "subset0"
    whole, centres = out / f"{preset}-scans", out / f"{preset}-true-centres"
    lungtk("pipeline", "run", scans, "--preset", preset, "--out", whole, "--resume")  # reruns reuse scans
    froc = json.loads(
        lungtk(
            "eval", "froc", "--findings", whole / "findings.csv", "--annotations", phantoms / "annotations.csv",
            "--excluded", phantoms / "annotations_excluded.csv", "--json",
        )
    )  # fmt: skip
    agreement = json.loads(
        lungtk(
            "fleischner", "eval", whole / "findings.json", "--labels", labels, "--scheme", "fleischner2017",
            "--json",
        )
    )  # fmt: skip
    lungtk(
        "pipeline", "run", scans, "--preset", preset, "--candidates", phantoms / "annotations.csv",
        "--threshold", "0", "--out", centres, "--resume",
    )  # fmt: skip
    classes = json.loads(
        lungtk(
            "eval", "cls", "--findings", centres / "findings.csv", "--truth", phantoms, "--task", "texture",
            "--task", "malignancy", "--json",
        )
    )  # fmt: skip
    dice, n_dice = dice_at_true_centres(centres, phantoms)
    confusion = np.asarray(agreement["confusion_matrix"])
    records = json.loads((whole / "findings.json").read_text(encoding="utf-8"))["scans"]
    seconds = [sum(r["timings_s"].values()) for r in records]  # as analysed, also when reused since
    return {
        "preset": preset,
        "sensitivity": froc["sensitivity_at_fp_per_scan"],
        "cpm": froc["cpm"],
        "dice": dice,
        "dice_nodules": n_dice,
        "texture_accuracy": classes["texture"]["accuracy"],
        "malignancy_auc": classes["malignancy"]["auc"],
        "fleischner_kappa": agreement["kappa_quadratic"],
        "fleischner_agreement": float(np.trace(confusion) / confusion.sum()),
        "seconds_per_scan": float(np.mean(seconds)),
        "scans": froc["scans"],
        "nodules": froc["nodules"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("phantoms", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", action="append", help="repeat; default: classical and learned")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    labels = fleischner_labels(args.phantoms, args.out)
    rows = [evaluate(p, args.phantoms, args.out, labels) for p in args.preset or ["classical", "learned"]]
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    first = rows[0]
    print(
        f"{first['scans']} scans, {first['nodules']} nodules of 3 mm or more; Dice over the "
        f"{first['dice_nodules']} nodules of {MIN_DIAMETER_MM:g} mm or more\n"
    )
    print(
        "| preset | sensitivity at 1/8 … 8 FP/scan | CPM | Dice | texture acc. | malignancy AUC "
        "| Fleischner agreement (κ) | s/scan |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        sens = " ".join(f"{v:.2f}" for v in r["sensitivity"].values())  # type: ignore[union-attr]
        print(
            f"| `{r['preset']}` | {sens} | {r['cpm']:.3f} | {r['dice']:.3f} | {r['texture_accuracy']:.3f} | "
            f"{r['malignancy_auc']:.3f} | {r['fleischner_agreement']:.2f} ({r['fleischner_kappa']:.2f}) | "
            f"{r['seconds_per_scan']:.1f} |"
        )


if __name__ == "__main__":
    main()
