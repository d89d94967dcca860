"""The CUDA paths end to end, as a user runs them: the learned pipeline on a GPU (fp32 and autocast,
batched crops, pinned copies, the read-ahead thread) finds what it finds on the CPU, and training under
bf16 and fp16 autocast writes a model the CPU can load. Skipped without a GPU: CI has none, so run this
file on a GPU machine (`uv run pytest tests/test_cuda_paths.py`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_lungtk

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cuda") / "ph"
    made = run_lungtk("phantom", "--out", root, "--n", "2", "--seed", "31", "--shape", "96,160,160")
    assert made.returncode == 0, made.stderr
    return root


def _findings(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "findings.csv").open(encoding="utf-8")))


def _xyz(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row[k]) for k in ("coordX", "coordY", "coordZ")])


def _pipeline(phantoms: Path, out: Path, device: str, precision: str) -> list[dict[str, str]]:
    proc = run_lungtk(
        "pipeline", "run", phantoms / "subset0", "--out", out, "--device", device,
        "--precision", precision, "--threshold", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return _findings(out)


def _nearest(row: dict[str, str], rows: list[dict[str, str]]) -> tuple[float, dict[str, str]]:
    same = [r for r in rows if r["seriesuid"] == row["seriesuid"]]
    assert same, f"no finding on {row['seriesuid']} to compare with {row}"
    distances = [float(np.linalg.norm(_xyz(r) - _xyz(row))) for r in same]
    best = int(np.argmin(distances))
    return distances[best], same[best]


@pytest.fixture(scope="module")
def cpu_findings(phantoms, tmp_path_factory) -> list[dict[str, str]]:
    return _pipeline(phantoms, tmp_path_factory.mktemp("cpu") / "out", "cpu", "fp32")


def test_learned_pipeline_in_fp32_on_cuda_matches_the_cpu(phantoms, cpu_findings, tmp_path):
    gpu = _pipeline(phantoms, tmp_path / "out", "cuda", "fp32")
    likely = [r for r in cpu_findings if float(r["probability"]) >= 0.3]
    assert likely, "the CPU run found nothing to compare"
    for row in likely:  # cuDNN may use TF32 and other kernels: the same findings, not the same bits
        distance, match = _nearest(row, gpu)
        assert distance < 1.0, (row, match)
        assert abs(float(match["probability"]) - float(row["probability"])) < 0.05, (row, match)
        size, gpu_size = float(row["diameter_mm"]), float(match["diameter_mm"])
        assert abs(gpu_size - size) <= 0.15 * size, (row, match)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_learned_pipeline_under_autocast_finds_the_same_nodules(phantoms, cpu_findings, tmp_path, precision):
    gpu = _pipeline(phantoms, tmp_path / "out", "cuda", precision)
    for row in (r for r in cpu_findings if float(r["probability"]) >= 0.5):
        distance, match = _nearest(row, gpu)
        assert distance < 2.0 and float(match["probability"]) >= 0.3, (row, match)


@pytest.mark.parametrize(("task", "amp"), [("nodulenet", "bf16"), ("resunet", "fp16")])
def test_training_under_autocast_writes_a_model_the_cpu_loads(phantoms, tmp_path, task, amp):
    from lungtk.train.modelfile import describe, load_model

    small = {"nodulenet": ["width=0.125", "patch=32"], "resunet": ["width=4", "levels=3", "patch=16"]}[task]
    settings = [
        f"--set={s}" for s in [*small, "batch_size=2", "val_every=3", "val_patches=4", "num_workers=1"]
    ]
    proc = run_lungtk(
        "train", task, "--data", phantoms, "--out", tmp_path / "run", "--steps", "6", "--device", "cuda",
        f"--set=amp={amp}", *settings, env={"LUNGTK_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    model = Path(proc.stdout.strip().splitlines()[-1])
    info = describe(model)
    assert info["training"]["device"].startswith("cuda") and info["training"]["steps"] == 6
    loaded = load_model(model, task, device="cpu").model
    assert all(torch.isfinite(p).all() for p in loaded.parameters())
