"""The classical pipeline on a full-size scan: peak memory and seconds per stage.

    uv run python benchmarks/bench_pipeline.py [--shape 400,512,512] [--budget-gb 3]

A phantom of the default size (160x256x256) and one of ``--shape`` are written, then each goes through
`lungtk pipeline run` (blob -> regiongrow -> size) in its own process. Printed: each run's peak resident
memory and its ratio to the budget, the seconds per stage, and the big scan's time per voxel as a ratio
to the small one's (measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _lungtk(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lungtk.cli.main", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)


def _run(root: Path, shape: str) -> dict:
    phantoms, out = root / f"ph-{shape}", root / f"out-{shape}"
    _lungtk("phantom", "--out", str(phantoms), "--n", "1", "--seed", "5", "--shape", shape)
    _lungtk("pipeline", "run", str(phantoms / "subset0"), "--out", str(out))
    return json.loads((out / "findings.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="400,512,512")
    parser.add_argument("--budget-gb", type=float, default=3.0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ("160,256,256", args.shape):
            summary = _run(Path(tmp), shape)
            voxels = 1
            for n in shape.split(","):
                voxels *= int(n)
            results[shape] = (summary, voxels)
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary["timings_s"].items() if v)
            peak = summary["peak_rss_mb"] / 1024
            print(
                f"{shape}: peak RSS {peak:.2f} GiB ({peak / args.budget_gb:.2f} of the {args.budget_gb:g} GiB "
                f"budget); {stages}"
            )
    (small, n_small), (big, n_big) = results.values()
    ratio = (big["timings_s"]["total"] / n_big) / (small["timings_s"]["total"] / n_small)
    print(f"time per voxel, {args.shape} vs 160,256,256: {ratio:.2f}x")


if __name__ == "__main__":
    main()
