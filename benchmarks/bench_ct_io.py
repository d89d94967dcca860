"""ct-io speed, as ratios against baselines measured in the same run (no absolute thresholds).

    uv run python benchmarks/bench_ct_io.py [--shape 300,512,512]

1. Random 32x48x48 crops: from the volume cache (memory map) vs decoding the scan for every crop, and vs
   copying the same crops out of an in-RAM array (the floor).
2. xyz2irc on 10^6 points vs a per-point SimpleITK loop (timed on a sample, scaled per point).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungtk.core import Geometry
from lungtk.ct_io import read_ct, write_image
from lungtk.ct_io.cache import VolumeCache
from lungtk.ct_io.crops import crop_array, crop_bounds

CROP = (32, 48, 48)


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def bench_crops(shape: tuple[int, int, int], n_crops: int, n_decodes: int) -> None:
    rng = np.random.default_rng(0)
    geometry = Geometry(np.array([-180.0, -170.0, -350.0]), np.array([0.7, 0.7, 1.25]), np.eye(3))
    volume = rng.integers(-1024, 1200, size=shape, dtype=np.int16)
    centres = rng.integers(0, shape, size=(n_crops, 3))
    with tempfile.TemporaryDirectory() as tmp:
        scan = write_image(Path(tmp) / "bench.mhd", volume, geometry)
        cache = VolumeCache(Path(tmp) / "cache")
        cache.warm(scan)
        cached = cache.get(scan).array
        for c in centres[:50]:  # touch the pages once, as a training loop would after its first epoch
            crop_array(cached, crop_bounds(c, CROP), CROP)
        t_decode = per_call(
            lambda i: crop_array(read_ct(scan).array, crop_bounds(centres[i], CROP), CROP), n_decodes
        )
        t_cache = per_call(
            lambda i: crop_array(cache.get(scan).array, crop_bounds(centres[i], CROP), CROP), n_crops
        )
        t_ram = per_call(lambda i: crop_array(volume, crop_bounds(centres[i], CROP), CROP), n_crops)
    print(f"scan {shape} int16, {n_crops} random {CROP} crops")
    print(f"  decode per crop   {t_decode * 1e3:9.3f} ms")
    print(
        f"  volume cache      {t_cache * 1e3:9.3f} ms   ({t_decode / t_cache:7.1f}x faster than decoding; target >= 50x)"
    )
    print(f"  in-RAM array      {t_ram * 1e3:9.3f} ms   (cache / RAM = {t_cache / t_ram:.2f}x; target <= 2x)")


def bench_xyz2irc(n_points: int, n_loop: int) -> None:
    geometry = Geometry(np.array([-180.0, -170.0, -350.0]), np.array([0.7, 0.7, 1.25]), np.eye(3))
    image = sitk.Image(8, 8, 8, sitk.sitkInt16)
    image.SetOrigin(tuple(geometry.origin))
    image.SetSpacing(tuple(geometry.spacing))
    points = np.random.default_rng(1).uniform(-200, 200, size=(n_points, 3))
    timings = []
    for _ in range(5):  # best of 5: the first call also pays for allocating the output
        start = time.perf_counter()
        geometry.xyz2irc(points)
        timings.append((time.perf_counter() - start) / n_points)
    t_ours = min(timings)
    sample = [tuple(p) for p in points[:n_loop]]
    start = time.perf_counter()
    for p in sample:
        image.TransformPhysicalPointToIndex(p)
    t_loop = (time.perf_counter() - start) / n_loop
    print(
        f"xyz2irc on {n_points:.0e} points: {t_ours * 1e9:.1f} ns/point vectorised, "
        f"{t_loop * 1e9:.0f} ns/point SimpleITK loop -> {t_loop / t_ours:.0f}x faster; target >= 100x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="300,512,512", help="scan shape index,row,col")
    parser.add_argument("--crops", type=int, default=2000)
    parser.add_argument("--decodes", type=int, default=5)
    args = parser.parse_args()
    bench_crops(tuple(int(v) for v in args.shape.split(",")), args.crops, args.decodes)  # type: ignore[arg-type]
    bench_xyz2irc(1_000_000, 20_000)


if __name__ == "__main__":
    main()
