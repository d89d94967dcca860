"""Pipeline speed and memory: the learned pipeline's overhead over its own model forwards, and the peak
memory of a full-size scan.

    uv run python benchmarks/bench_pipeline.py [--preset learned] [--device auto] [--precision fp32]
                                               [--scans 4] [--big 400,512,512] [--budget-gb 3]

1. Overhead: phantoms of the default size (160x256x256) go through `lungtk.pipeline.run` with the preset's components in this
   process. Every network of every component is timed by forward hooks on all its modules (outermost
   calls only; CUDA synchronised where one starts and ends),
   so the run's wall time is compared with the sum of its model forwards measured in the same run
   (target on a GPU: wall / forwards <= 1.2). The first scan warms up (cudnn, allocator) and is left out.
2. Memory: one phantom of ``--big`` through `lungtk pipeline run` in its own process (peak resident memory
   against ``--budget-gb``); ``--big none`` skips it.

Prints the device, the seconds per stage, peak host memory and, on CUDA, peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lungtk.core import get_registry
from lungtk.core.presets import DEFAULT_PRESET, PRESETS, get_preset
from lungtk.phantom import write_phantoms
from lungtk.phantom.scan import DEFAULT_SHAPE
from lungtk.pipeline import Pipeline, expand_scans, run


class ForwardTimer:
    """Seconds spent inside the networks' forward calls. Every module is hooked (a component may call its
    network's parts, e.g. NoduleNet's detect() runs the feature net, then the heads); only the outermost
    call running at a time is counted, so nested modules are not counted twice."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0
        self._started = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _before(self, _module: torch.nn.Module, _args: Any) -> None:
        if self._depth == 0:
            self._sync()
            self._started = time.perf_counter()
        self._depth += 1

    def _after(self, _module: torch.nn.Module, _args: Any, _out: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._sync()
            self.seconds += time.perf_counter() - self._started
            self.calls += 1

    def attach(self, network: torch.nn.Module) -> None:
        for module in network.modules():
            module.register_forward_pre_hook(self._before)
            module.register_forward_hook(self._after)


def networks_of(instance: Any) -> list[torch.nn.Module]:
    """The torch networks a component holds as attributes (one level down, and inside dataclasses)."""
    found = []
    for value in vars(instance).values() if hasattr(instance, "__dict__") else ():
        if isinstance(value, torch.nn.Module):
            found.append(value)
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            found.extend(v for v in vars(value).values() if isinstance(v, torch.nn.Module))
    return found


def overhead(args: argparse.Namespace, root: Path) -> None:
    preset = get_preset(args.preset)
    phantoms = root / "phantoms"
    write_phantoms(phantoms, n=args.scans + 1, seed=17, overwrite=True)
    scans = expand_scans([phantoms / "subset0"])
    pipeline = Pipeline.from_registry(
        get_registry(),
        preset.detector,
        preset.segmenter,
        list(preset.classifiers),
        device=args.device,
        precision=args.precision,
    )
    timer = ForwardTimer(pipeline.device)
    seen: set[int] = set()
    for component in pipeline.components:
        for network in networks_of(component.instance):
            if id(network) not in seen:
                seen.add(id(network))
                timer.attach(network)
    if not seen:
        print(f"preset {preset.name}: no torch network found in its components; nothing to compare")
    run(pipeline, scans[:1], root / "warm-up")  # cudnn autotuning, allocator, first-call costs
    if pipeline.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    timer.seconds, timer.calls = 0.0, 0
    started = time.perf_counter()
    summary = run(pipeline, scans[1:], root / "out")
    wall = time.perf_counter() - started
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items() if v and k != "total")
    print(
        f"preset {preset.name} ({preset.composition()}) on {_device_name(pipeline.device)}, {args.precision}"
    )
    shape = "x".join(map(str, DEFAULT_SHAPE))
    print(f"  {len(scans) - 1} scans of {shape}, {len(summary.findings)} findings; {stages}")
    if timer.seconds > 0:
        print(
            f"  wall {wall:.2f}s, model forwards {timer.seconds:.2f}s in {timer.calls} calls: "
            f"wall / forwards = {wall / timer.seconds:.2f}x (target <= 1.2x on a GPU)"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"  peak host memory {peak:.2f} GiB (this process)")
    if pipeline.device.startswith("cuda"):
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (allocated by torch)")


def big_scan(args: argparse.Namespace, root: Path) -> None:
    phantoms, out = root / "big", root / "big-out"
    _lungtk("phantom", "--out", str(phantoms), "--n", "1", "--seed", "5", "--shape", args.big)
    _lungtk(
        "pipeline", "run", str(phantoms / "subset0"), "--out", str(out), "--preset", args.preset,
        "--device", args.device, "--precision", args.precision,
    )  # fmt: skip
    summary = json.loads((out / "findings.json").read_text())
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary["timings_s"].items() if v)
    peak = summary["peak_rss_mb"] / 1024
    print(
        f"{args.big} scan, preset {args.preset}: peak host memory {peak:.2f} GiB ({peak / args.budget_gb:.2f} "
        f"of the {args.budget_gb:g} GiB budget); {stages}"
    )


def _lungtk(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "lungtk.cli.main", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--scans", type=int, default=4, help="timed scans (one more warms up)")
    parser.add_argument("--big", default="400,512,512", help="shape of the memory test scan, or none")
    parser.add_argument("--budget-gb", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args, Path(tmp))
        if args.big != "none":
            big_scan(args, Path(tmp))


if __name__ == "__main__":
    main()
