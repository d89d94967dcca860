"""lungtk-train speed, as ratios measured in the same run (no absolute thresholds).

    uv run python benchmarks/bench_train.py [--scans 4] [--workers 2] [--task unet-tiny] [--set KEY=VALUE ...]

1. The patch loader (DataLoader workers: crop from the volume cache, resample to the task's spacing,
   window, augment) in patches/s, against one training step of the task's network (forward, backward,
   optimizer) on the same batches in patches/s. The loader must not be the bottleneck: ratio >= 1.
2. On a GPU: steps/s in float32 and with AMP (bf16, fp16 with a grad scaler), and the peak GPU memory.
3. Peak resident memory of this process.

Data: lungtk phantoms (160x256x256 scans), decoded into a temporary volume cache first.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--task", default="unet-tiny")
    parser.add_argument("--batches", type=int, default=30, help="batches timed per measurement")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LUNGTK_CACHE_DIR"] = str(Path(tmp) / "cache")
        import torch

        from lungtk.phantom import write_phantoms
        from lungtk.train.config import parse_set
        from lungtk.train.loop import Trainer, _Requests, _to
        from lungtk.train.run import plan, prepare_data
        from lungtk.train.task import create_task

        data = Path(tmp) / "phantoms"
        t0 = time.perf_counter()
        write_phantoms(data, args.scans, seed=7, n_nodules=3)
        print(f"{args.scans} phantom scans written in {time.perf_counter() - t0:.1f}s")
        given = {"num_workers": args.workers, "val_fraction": 0.0, **parse_set(args.assignments, args.task)}
        the_plan = plan(args.task, data, Path(tmp) / "run", given, device="auto")
        device = the_plan.device
        task = create_task(the_plan.spec, the_plan.config, device)
        t0 = time.perf_counter()
        train_data, _ = prepare_data(the_plan, task.recipe.target)
        print(f"scans decoded into the cache in {time.perf_counter() - t0:.1f}s; device {device}")
        config = the_plan.config
        batch = int(config["batch_size"])
        print(
            f"task {args.task}: batch {batch}, patch {config['patch']} at spacing {config['spacing']}, "
            f"augmentation {config['augmentation']}, {args.workers} loader workers"
        )

        trainer = Trainer(task, train_data, Path(tmp) / "run", device=device)
        trainer._build()
        stream = train_data.sampler.stream(0, batch)
        loader = iter(trainer._loader(train_data.train, _Requests(stream), 0))
        for _ in range(3):  # start the workers, touch the cache
            next(loader)
        t0 = time.perf_counter()
        batches = [next(loader) for _ in range(args.batches)]
        loader_rate = args.batches * batch / (time.perf_counter() - t0)
        del loader

        def step(amp: torch.dtype | None, n: int) -> float:
            trainer.amp = amp
            trainer.scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
            cycle = itertools.cycle(batches)
            for _ in range(3):
                one(next(cycle))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(n):
                one(next(cycle))
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return n / (time.perf_counter() - t)

        def one(b: dict) -> None:
            b = _to(b, device)
            trainer.optimizer.zero_grad(set_to_none=True)
            with trainer.autocast():
                loss = trainer.loss_fn(task.forward(trainer.net, b), b)
            trainer.scaler.scale(loss).backward()
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()

        fp32 = step(None, args.batches)
        train_rate = fp32 * batch
        print(f"loader          {loader_rate:9.1f} patches/s")
        print(f"training step   {train_rate:9.1f} patches/s ({fp32:.2f} steps/s, float32)")
        verdict = "ok" if loader_rate >= train_rate else "the loader is the bottleneck"
        print(f"loader / step   {loader_rate / train_rate:9.2f}x  (target >= 1: {verdict})")
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            step(None, args.batches)
            peak32 = torch.cuda.max_memory_allocated() / 2**20
            for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                torch.cuda.reset_peak_memory_stats()
                rate = step(dtype, args.batches)
                peak = torch.cuda.max_memory_allocated() / 2**20
                print(
                    f"AMP {name}        {rate:9.2f} steps/s ({rate / fp32:.2f}x float32); "
                    f"peak GPU memory {peak:.0f} MiB (float32 {peak32:.0f} MiB)"
                )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak resident memory of this process: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
