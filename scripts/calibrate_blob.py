"""Fit the blob detector's logistic calibration on phantoms and write it into lungtk.detect.

    uv run python scripts/calibrate_blob.py --seed 101 --n 12 [--out PATH]

The phantoms' seeds must differ from those used to evaluate the detector (the closing notes evaluate on
seed 9000 and up). A peak is a positive when it lies within a nodule's radius (at least 2 mm).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lungtk.core import write_text
from lungtk.detect.blob import FEATURES, BlobDetector
from lungtk.phantom import make_scan

DEFAULT_OUT = Path(__file__).parents[1] / "packages/detect/src/lungtk/detect/blob_calibration.json"


def collect(seed: int, n: int, detector: BlobDetector) -> tuple[np.ndarray, np.ndarray, int, int]:
    features, labels, found, total = [], [], 0, 0
    for index in range(n):
        scan = make_scan(seed=seed, index=index)
        peaks = detector.peaks(scan.ct)
        xyz = scan.ct.geometry.irc2xyz(peaks.irc) if len(peaks.irc) else np.zeros((0, 3))
        hit = np.zeros(len(xyz), bool)
        for nodule in scan.nodules:
            near = np.linalg.norm(xyz - np.asarray(nodule.center_xyz), axis=1) <= max(
                nodule.diameter_mm / 2, 2
            )
            hit |= near
            found += bool(near.any())
            total += 1
        features.append(peaks.features)
        labels.append(hit)
        print(f"scan {index}: {len(xyz)} peaks, {hit.sum()} on nodules", flush=True)
    return np.concatenate(features), np.concatenate(labels), found, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    detector = BlobDetector()
    x, y, found, total = collect(args.seed, args.n, detector)
    print(f"{len(y)} peaks, {int(y.sum())} positive; the peaks reach {found}/{total} nodules")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, class_weight=None, max_iter=1000).fit((x - mean) / scale, y)
    prob = model.predict_proba((x - mean) / scale)[:, 1]
    print(f"training AUC {roc_auc_score(y, prob):.3f}")
    for name, c in zip(FEATURES, model.coef_[0], strict=True):
        print(f"  {name:>14}: {c:+.3f}")
    calibration = {
        "features": list(FEATURES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) for v in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
        "fitted_on": f"lungtk phantoms, seed {args.seed}, {args.n} scans, {len(y)} peaks ({int(y.sum())} nodules)",
    }
    write_text(args.out, json.dumps(calibration, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
