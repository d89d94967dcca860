"""Sliding-window inference speed and memory, as ratios within one run (no absolute thresholds).

    uv run python benchmarks/bench_inference.py [--shape 96,192,192] [--window 48,96,96] [--device cpu]

1. Time of ``sliding_window`` over one volume with a small 3D conv net at batch size 1, 4 and 8, as
   ratios against batch size 1 (best of ``--repeat`` runs after a warm-up).
   The share of the time spent outside the model (tiling, copies, blending) is printed with it.
2. Peak private memory added by one call (RssAnon sampled from /proc/self/status, in a fresh process) for
   the volume and a volume twice as deep, in RAM and as a numpy memory map (read a window at a time),
   against the two float32 accumulation buffers: what grows with the volume is the buffers; windows and
   activations do not.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lungtk.nn_blocks import sliding_window

MB = 2**20


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(8, 1, 1),
    ).eval()


class PeakRSS:
    """Highest anonymous resident memory (RssAnon: not the pages of mapped files) seen while the block
    runs, sampled every millisecond (Linux)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("RssAnon:"))
        return int(line.split()[1]) * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def added(self) -> int:
        return self.peak - self.before


class Timed:
    """The model, with the time spent inside it (the rest of a call is tiling, copies and blending)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.seconds = model, 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        y = self.model(x)
        if y.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return y


def bench_batch_sizes(model, volume, window, device, repeat: int) -> None:
    print(f"sliding_window over {volume.shape[1:]} float32, window {window}, overlap 0.5, gaussian, {device}")
    sliding_window(model, volume, window, batch_size=4, device=device)  # warm-up
    times = {}
    for batch_size in (1, 4, 8):
        runs = []
        for _ in range(repeat):
            timed = Timed(model)
            start = time.perf_counter()
            sliding_window(timed, volume, window, batch_size=batch_size, device=device)
            runs.append((time.perf_counter() - start, timed.seconds))
        times[batch_size] = min(runs)
    for batch_size, (seconds, in_model) in times.items():
        print(
            f"  batch_size {batch_size}   {seconds:7.3f} s   ({times[1][0] / seconds:5.2f}x the speed of "
            f"batch_size 1; {(seconds - in_model) / seconds:5.1%} of it outside the model)"
        )


def bench_memory(shape, window, device) -> None:
    print("peak memory added by one call (batch_size 1, a fresh process each), by volume size:")
    for depth in (shape[0], 2 * shape[0]):
        voxels = depth * shape[1] * shape[2]
        volume_mb, buffers_mb = voxels * 4 / MB, 2 * voxels * 4 / MB  # buffers: logits (K = 1) + weights
        for source in ("ram", "memmap"):
            command = [sys.executable, __file__, "--measure", source, "--device", device]
            command += ["--shape", f"{depth},{shape[1]},{shape[2]}", "--window", ",".join(map(str, window))]
            added_mb = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            print(
                f"  {(depth, *shape[1:])} {source:6s}  volume {volume_mb:4.0f} MB  buffers {buffers_mb:4.0f} MB  "
                f"peak added {added_mb:5.0f} MB (buffers + {added_mb - buffers_mb:4.0f} MB of windows, "
                "activations and allocator slack)"
            )


def measure(source: str, shape, window, device) -> None:
    """In a fresh process: print the MB of private memory one call adds at its peak."""
    volume = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    model = small_net().to(device)
    with tempfile.TemporaryDirectory() as tmp:
        if source == "memmap":
            np.save(Path(tmp) / "v.npy", volume)
            del volume
            volume = np.load(Path(tmp) / "v.npy", mmap_mode="r")
        with PeakRSS() as peak:
            sliding_window(model, volume, window, batch_size=1, device=device)
        del volume
    print(peak.added / MB)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="96,192,192")
    parser.add_argument("--window", default="48,96,96")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--measure", choices=["ram", "memmap"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    window = tuple(int(v) for v in args.window.split(","))
    if args.measure:
        return measure(args.measure, shape, window, args.device)
    volume = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    model = small_net().to(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_batch_sizes(model, volume, window, args.device, args.repeat)
    bench_memory(shape, window, args.device)


if __name__ == "__main__":
    main()
