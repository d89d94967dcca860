"""``lungtk train`` and ``lungtk models`` as a user runs them: a tiny U-Net trained on phantoms, killed and
resumed to the same weights, two processes on gloo, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_lungtk
from lungtk.cli.main import run

TINY = [
    *("--set", "width=2", "--set", "patch=16", "--set", "batch_size=2", "--set", "lr=0.01"),
    *("--set", "warmup_steps=0", "--set", "val_patches=8", "--set", "log_every=2", "--set", "num_workers=0"),
]


class Smuggled:
    """A pickle that runs code when loaded: it would create a file named by the test."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-cli") / "phantoms"
    made = run_lungtk("phantom", "--out", root, "--n", "4", "--seed", "1", "--shape", "48,64,64")
    assert made.returncode == 0, made.stderr
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, str]:
    return {"LUNGTK_CACHE_DIR": str(tmp_path_factory.mktemp("train-cache"))}


@pytest.fixture(scope="module")
def trained(phantoms, cache, tmp_path_factory):
    """A 30-step run, as a user starts it: (run folder, the finished process)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    proc = run_lungtk(
        "train",
        "unet-tiny",
        "--data",
        phantoms,
        "--out",
        out,
        "--steps",
        "30",
        "--set",
        "val_every=10",
        *TINY,
        env=cache,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture
def short_run(trained) -> Path:
    return trained[0]


def cli(capsys, monkeypatch, cache, *args) -> tuple[int, str, str]:
    """``lungtk ARGS`` in this process (fast for errors raised before training); (status, stdout, stderr)."""
    for key, value in cache.items():
        monkeypatch.setenv(key, value)
    try:
        run([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_list() -> None:
    proc = run_lungtk("train", "list")
    assert proc.returncode == 0 and "unet-tiny" in proc.stdout and "lungtk-train" in proc.stdout
    listed = json.loads(run_lungtk("train", "list", "--json").stdout)
    tiny = next(t for t in listed if t["name"] == "unet-tiny")
    assert tiny["settings"]["width"] == 8 and tiny["distribution"] == "lungtk-train"


def test_a_tiny_unet_trains_from_the_command_line(trained) -> None:
    out, proc = trained
    assert proc.stdout.strip() == str(out / "model.safetensors")  # stdout: the model file only
    assert "trained unet-tiny for 30 of 30 steps" in proc.stderr and "Traceback" not in proc.stderr
    losses = [r["loss"] for r in _metrics(out) if "loss" in r]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    for name in ("config.toml", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).is_file()
    info = json.loads(run_lungtk("models", "info", out / "model.safetensors", "--json").stdout)
    assert info["architecture"] == "unet" and info["arch_args"]["widths"] == [2, 4, 8]
    assert info["task"] == "unet-tiny" and info["training"]["config"]["steps"] == 30
    assert info["preprocessing"]["window"] == "unit" and "dice" in info["metrics"]
    table = run_lungtk("models", "info", out / "model.safetensors")
    assert table.returncode == 0 and "unet" in table.stdout and "parameters" in table.stdout


def test_a_killed_run_resumes_to_the_same_weights(phantoms, cache, tmp_path) -> None:
    common = ["--data", phantoms, "--steps", "12", "--seed", "3", *TINY]
    common += ["--set", "checkpoint_every=4", "--set", "val_every=4", "--set", "augmentation=seed000"]
    whole = tmp_path / "whole"
    assert run_lungtk("train", "unet-tiny", "--out", whole, *common, env=cache).returncode == 0
    killed = tmp_path / "killed"
    workers = ["--set", "num_workers=2"]  # results do not depend on the number of workers
    proc = run_lungtk(
        "train", "unet-tiny", "--out", killed, *common, *workers, env={**cache, "LUNGTK_TRAIN_KILL_AT": "6"}
    )
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()
    assert torch.load(killed / "checkpoints/last.pt", weights_only=True)["step"] == 4
    proc = run_lungtk("train", "unet-tiny", "--out", killed, *common, *workers, "--resume", env=cache)
    assert proc.returncode == 0, proc.stderr
    a = torch.load(whole / "checkpoints/last.pt", weights_only=True)
    b = torch.load(killed / "checkpoints/last.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    x, y = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    steps = [r["step"] for r in _metrics(killed)]
    assert steps == [r["step"] for r in _metrics(whole)]  # the log was cut back to step 4, not doubled


def test_two_processes_on_gloo_train_and_write_once(phantoms, cache, tmp_path) -> None:
    out = tmp_path / "ddp"
    proc = run_lungtk(
        "train", "unet-tiny", "--data", phantoms, "--out", out, "--steps", "6", "--nproc", "2", *TINY,
        "--set", "val_every=3", env=cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "model.safetensors")
    assert "starting 2 processes" in proc.stderr and proc.stderr.count("trained unet-tiny") == 1
    rows = _metrics(out)
    assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6]
    assert [r["step"] for r in rows if "val" in r] == [3, 6]
    state = torch.load(out / "checkpoints/last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["samples"] == 6 * 2 * 2
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.toml", "curves.png", "metrics.jsonl", "model.safetensors", "splits.json",
    ]  # fmt: skip


# -- one clear line for each mistake -------------------------------------------------------------------


def test_a_smuggled_pickle_is_refused(short_run, phantoms, cache, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "smuggled"
    shutil.copytree(short_run, out)
    marker = tmp_path / "code-ran"
    torch.save(
        {"format": "lungtk-train-checkpoint", "version": 1, "x": Smuggled(marker)},
        out / "checkpoints/last.pt",
    )
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", phantoms, "--out", out, "--resume"
    )
    assert code == 1 and "refused: it holds pickled Python objects" in err and "Traceback" not in err
    assert not marker.exists()


def test_corrupt_and_foreign_checkpoints(short_run, phantoms, cache, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "bad"
    shutil.copytree(short_run, out)
    last = out / "checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", phantoms, "--out", out, "--resume"
    )
    assert code == 1 and "not a readable checkpoint" in err
    torch.save({"state_dict": {"w": torch.ones(1)}}, last)
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", phantoms, "--out", out, "--resume"
    )
    assert code == 1 and "not a lungtk training checkpoint" in err


def test_resume_with_another_configuration(short_run, phantoms, cache, capsys, monkeypatch) -> None:
    args = ["train", "unet-tiny", "--data", phantoms, "--out", short_run]
    code, _, err = cli(capsys, monkeypatch, cache, *args, "--resume", "--set", "lr=0.5")
    assert code == 1 and "configuration differs" in err and "lr: 0.01 -> 0.5" in err
    code, _, err = cli(capsys, monkeypatch, cache, *args)
    assert code == 1 and "already holds a run" in err and "--resume" in err
    code, _, err = cli(capsys, monkeypatch, cache, *args, "--resume", "--nproc", "2")
    assert code == 1 and "trained by 1 process(es), not 2; resume it with --nproc 1" in err


def test_unknown_task_and_setting(phantoms, cache, tmp_path, capsys, monkeypatch) -> None:
    code, _, err = cli(capsys, monkeypatch, cache, "train", "unet-tny", "--data", phantoms, "--out", tmp_path)
    assert code == 1 and "unknown task 'unet-tny'" in err and "did you mean 'unet-tiny'" in err
    code, _, err = cli(
        capsys,
        monkeypatch,
        cache,
        "train",
        "unet-tiny",
        "--data",
        phantoms,
        "--out",
        tmp_path,
        "--set",
        "widht=4",
    )
    assert code == 1 and "no setting 'widht'; did you mean 'width'" in err
    code, _, err = cli(
        capsys,
        monkeypatch,
        cache,
        "train",
        "unet-tiny",
        "--data",
        phantoms,
        "--out",
        tmp_path,
        "--steps",
        "3",
        "--epochs",
        "2",
    )
    assert code == 1 and "not both" in err


def test_data_without_scans_or_labels(phantoms, cache, tmp_path, capsys, monkeypatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", empty, "--out", tmp_path / "r1"
    )
    assert code == 1 and "not a LUNA16" in err
    tables = tmp_path / "tables"
    tables.mkdir()
    shutil.copy(phantoms / "annotations.csv", tables)
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", tables, "--out", tmp_path / "r2"
    )
    assert code == 1 and "no scans found" in err
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(phantoms, unlabelled, ignore=shutil.ignore_patterns("masks"))
    (unlabelled / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    (unlabelled / "annotations_with_malignancy.csv").unlink()  # the loader prefers it to annotations.csv
    code, _, err = cli(
        capsys, monkeypatch, cache, "train", "unet-tiny", "--data", unlabelled, "--out", tmp_path / "r3"
    )
    assert code == 1 and "no labels for task 'unet-tiny'" in err


def test_a_model_file_of_another_architecture(
    short_run, phantoms, cache, tmp_path, capsys, monkeypatch
) -> None:
    from lungtk.train.modelfile import save_model

    other = save_model(
        tmp_path / "other.safetensors", torch.nn.Linear(2, 2), architecture="resunet", arch_args={}
    )
    args = ["train", "unet-tiny", "--data", phantoms, "--out", tmp_path / "r", "--set", f"init={other}"]
    code, _, err = cli(capsys, monkeypatch, cache, *args)
    assert code == 1 and "holds a 'resunet' model; setting init needs 'unet'" in err
    code, _, err = cli(capsys, monkeypatch, cache, "models", "info", short_run / "checkpoints/last.pt")
    assert code == 1 and "not a .safetensors model file" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_where_there_is_none(phantoms, cache, tmp_path, capsys, monkeypatch) -> None:
    code, _, err = cli(
        capsys,
        monkeypatch,
        cache,
        "train",
        "unet-tiny",
        "--data",
        phantoms,
        "--out",
        tmp_path,
        "--device",
        "cuda",
    )
    assert code == 1 and "--device cuda: no CUDA device is available here" in err


def test_settings_come_from_the_task_then_the_config_file_then_set(
    cache, tmp_path, capsys, monkeypatch
) -> None:
    config = tmp_path / "my.toml"
    config.write_text("lr = 0.25\nwidth = 4\n")
    args = ["train", "unet-tiny", "--show-config", "--config", config, "--set", "width=6", "--seed", "4"]
    code, out, _ = cli(capsys, monkeypatch, cache, *args)
    assert code == 0 and "lr = 0.25" in out and "width = 6" in out and "seed = 4" in out
    assert "batch_size = 4" in out and 'task = "unet-tiny"' in out  # the task's default
    config.write_text("[run]\ntask = 'other'\n")
    code, _, err = cli(capsys, monkeypatch, cache, *args)
    assert code == 1 and "configuration of task 'other'" in err
