"""Phantom speed: seconds per default 160x256x256 scan on one core, and where the time goes.

    uv run python benchmarks/bench_phantom.py [--scans 3]

The target is about a second per scan; the ratio printed is against decoding the same scan from disk
(SimpleITK), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import SimpleITK as sitk

from lungtk.ct_io import write_image
from lungtk.phantom import make_scan
from lungtk.phantom import scan as scan_module
from lungtk.phantom.dataset import shape_library


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=3)
    args = parser.parse_args()
    library = shape_library("auto")
    make_scan(99, 0, library=library)  # warm-up (imports, caches)
    stages: dict[str, float] = {}
    for name in ("build_chest", "grow_vessels", "draw_segments"):
        original = getattr(scan_module, name)

        def timed(*a, _f=original, _n=name, **k):
            t = time.perf_counter()
            result = _f(*a, **k)
            stages[_n] = stages.get(_n, 0.0) + time.perf_counter() - t
            return result

        setattr(scan_module, name, timed)
    times, reads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.scans):
            t = time.perf_counter()
            scan = make_scan(1, i, library=library)
            times.append(time.perf_counter() - t)
            path = write_image(f"{tmp}/{scan.series_uid}.mhd", scan.ct)
            t = time.perf_counter()
            sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            reads.append(time.perf_counter() - t)
    per_scan = float(np.median(times))
    print(f"shapes: {'lidc' if library else 'parametric'}; scans: {args.scans} of 160x256x256")
    print(f"seconds per scan (median): {per_scan:.2f}")
    for name, total in stages.items():
        print(f"  {name:<14} {total / args.scans:.2f} s/scan")
    print(f"phantom / SimpleITK read of the same scan: {per_scan / float(np.median(reads)):.1f}x")


if __name__ == "__main__":
    main()
