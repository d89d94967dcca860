"""Per-nodule segmentation and texture figures of a `lungtk pipeline run --candidates` output on phantoms.

    uv run lungtk pipeline run PH/subset0 --candidates PH/annotations.csv --segmenter resunet --out OUT
    uv run python scripts/eval_seg_phantoms.py OUT PH [--min-diameter 5]

Dice per nodule comes from `lungtk.seg.metrics.evaluate_folders(per_label=True)` (each phantom label
against the prediction label overlapping it most); the phantom's nodules.csv gives each label's diameter
and texture. Texture accuracy compares the findings' texture (the segmenter's head, else the classifier's)
with the phantom's, for the findings at the given centres.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from lungtk.core.labels import LUNA16_XYZ, TEXTURES
from lungtk.seg.metrics import evaluate_folders


def nodule_dice(run: Path, phantoms: Path) -> list[tuple[dict[str, str], float]]:
    """Each phantom nodule (its nodules.csv row) scored by the run's masks: the Dice of its label against
    the predicted label overlapping it most."""
    nodules = list(csv.DictReader((phantoms / "nodules.csv").open(encoding="utf-8")))
    by_label = {f"{n['seriesuid']}:{n['finding']}": n for n in nodules}
    evaluation = evaluate_folders(run / "masks", phantoms / "masks", per_label=True)
    return [(by_label[c.case], c.dice) for c in evaluation.cases if c.case in by_label]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a pipeline output folder (masks/, findings.json)")
    parser.add_argument("phantoms", type=Path, help="the phantom folder (masks/, nodules.csv)")
    parser.add_argument("--min-diameter", type=float, default=5.0)
    args = parser.parse_args()

    nodules = list(csv.DictReader((args.phantoms / "nodules.csv").open(encoding="utf-8")))
    rows = nodule_dice(args.run, args.phantoms)
    big = [d for n, d in rows if float(n["diameter_mm"]) >= args.min_diameter]
    small = [d for n, d in rows if 3.0 <= float(n["diameter_mm"]) < args.min_diameter]

    findings = json.loads((args.run / "findings.json").read_text(encoding="utf-8"))["findings"]
    truth_at = {(n["seriesuid"], *(round(float(n[c]), 2) for c in LUNA16_XYZ)): n["texture"] for n in nodules}
    pairs = []
    for f in findings:
        key = (f["seriesuid"], *(round(float(f[c]), 2) for c in LUNA16_XYZ))
        if key in truth_at:
            pairs.append((truth_at[key], f["texture"]))
    confusion = np.zeros((3, 3), dtype=int)
    for truth, guess in pairs:
        confusion[TEXTURES.index(truth), TEXTURES.index(guess)] += 1
    report = {
        "nodules_scored": len(rows),
        f"dice_mean_ge_{args.min_diameter:g}mm": round(float(np.mean(big)), 4) if big else None,
        f"dice_median_ge_{args.min_diameter:g}mm": round(float(np.median(big)), 4) if big else None,
        f"n_ge_{args.min_diameter:g}mm": len(big),
        f"dice_mean_3_to_{args.min_diameter:g}mm": round(float(np.mean(small)), 4) if small else None,
        "texture_accuracy": round(float(np.trace(confusion) / confusion.sum()), 4) if pairs else None,
        "texture_confusion(rows=truth ggo/part-solid/solid)": confusion.tolist(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
