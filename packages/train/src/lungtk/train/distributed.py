"""Several processes on torchrun: one per GPU (or CPU process on gloo), on one machine or many.

``lungtk train ... --nproc N`` starts ``python -m torch.distributed.run --standalone --nproc-per-node N``
with the same command; on several machines a user runs torchrun directly (``torchrun --nnodes 2
--node-rank 0 --rdzv-endpoint host:29500 --nproc-per-node 8 -m lungtk.cli.main train ...``). Each process
finds its rank in torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), joins the process group (NCCL on
CUDA, gloo on the CPU), wraps the network in DistributedDataParallel, and draws its own disjoint samples;
rank 0 alone writes files and shows progress, and validation counts are summed over ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from lungtk.core import LungtkError


def torchrun_world() -> int:
    """WORLD_SIZE when this process was started by torchrun, else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: str) -> Dist:
        """Join torchrun's process group when started by torchrun; a single process otherwise."""
        world = torchrun_world()
        if world == 1:
            return cls()
        import torch.distributed as td

        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        if not td.is_initialized():
            td.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        return cls(rank, world, local, backend)

    def device_for(self, device: str) -> str:
        """``cuda`` becomes this process's GPU (``cuda:LOCAL_RANK``) under torchrun."""
        if self.active and device.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return device

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return tensor
        import torch.distributed as td

        device = f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"
        buffer = tensor.to(device).clone()
        td.all_reduce(buffer, op=td.ReduceOp.SUM)
        return buffer.to(tensor.device)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (plain data and tensors), in rank order."""
        if not self.active:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self.active:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``lungtk <argv>`` in ``nproc`` processes on this machine under torchrun; its exit status."""
    if nproc < 1:
        raise LungtkError(f"--nproc {nproc}: use 1 or more")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "lungtk.cli.main",
        *argv,
    ]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=env)
