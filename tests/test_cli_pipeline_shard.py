"""``lungtk pipeline run`` over several processes, as a user runs it: ``--nproc 2`` and two torchrun ranks
on the CPU give the findings one process gives (a scan that fails on another process included, and the
exit status 1 it brings); a killed process's scans are redone by ``--resume``; given locations work
sharded; a bad combination is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_lungtk

SHAPE = "64,96,96"  # small phantoms: the classical pipeline takes about a second each
COMPONENTS = ("--detector", "blob", "--segmenter", "regiongrow", "--classifier", "size", "--threshold", "0.2")
BROKEN = "zz-broken"  # sorted last of four: process 1 of 2 gets it


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict:
    """Three phantoms and an unreadable scan in a list file, and what one process makes of them."""
    root = tmp_path_factory.mktemp("shard")
    made = run_lungtk("phantom", "--out", root / "ph", "--n", "3", "--seed", "31", "--shape", SHAPE)
    assert made.returncode == 0, made.stderr
    (root / f"{BROKEN}.mhd").write_text("ObjectType = Image\nNDims = 3\nElementDataFile = nowhere.raw\n")
    listing = root / "scans.txt"
    listing.write_text(f"ph/subset0\n{BROKEN}.mhd\n")
    one = root / "one"
    proc = run_lungtk("pipeline", "run", listing, "--out", one, *COMPONENTS)
    assert proc.returncode == 1, proc.stderr  # the broken scan fails; the others are written
    uids = sorted(p.name[:-4] for p in (root / "ph" / "subset0").glob("*.mhd"))
    return {"root": root, "listing": listing, "one": one, "uids": uids}


def _comparable(out: Path) -> dict:
    """findings.json without what differs between two runs of the same scans (clock, memory)."""
    data = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    for key in ("created", "timings_s", "peak_rss_mb"):
        data.pop(key)
    for scan in data["scans"]:
        scan.pop("timings_s")
    return data


def _same_outputs(out: Path, one: Path) -> None:
    assert (out / "findings.csv").read_text(encoding="utf-8") == (one / "findings.csv").read_text(
        encoding="utf-8"
    )
    assert len((one / "findings.csv").read_text(encoding="utf-8").splitlines()) > 10  # a real comparison
    assert (out / "fleischner.json").read_bytes() == (one / "fleischner.json").read_bytes()
    assert _comparable(out) == _comparable(one)
    for mask in (one / "masks").iterdir():
        assert (out / "masks" / mask.name).is_file()


def test_nproc_2_gives_the_findings_of_one_process(scans, tmp_path) -> None:
    out = tmp_path / "two"
    proc = run_lungtk("pipeline", "run", scans["listing"], "--out", out, *COMPONENTS, "--nproc", "2")
    assert proc.returncode == 1, proc.stderr  # the failed scan of process 1 fails the merged run
    assert proc.stdout.strip() == str(out)
    assert f"failed {BROKEN}: " in proc.stderr
    assert "1 of 4 scan(s) failed: zz-broken; the others' results are written" in proc.stderr
    assert re.search(r"analysing scans .* 4/4", proc.stderr)  # one bar for both processes
    _same_outputs(out, scans["one"])
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert summary["failed"] == 1 and summary["device"] == "cpu"


def test_two_torchrun_ranks_give_the_findings_of_one_process(scans, tmp_path) -> None:
    out = tmp_path / "ranks"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("LUNGTK_DEBUG", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "lungtk.cli.main", "pipeline", "run", str(scans["listing"]), "--out", str(out)]
    proc = subprocess.run(
        [*command, *COMPONENTS], capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=300
    )
    assert proc.returncode == 1, proc.stderr  # rank 0 reports the failed scan that rank 1 met
    assert proc.stdout.strip() == str(out)  # rank 0 alone prints OUT
    assert "1 of 4 scan(s) failed: zz-broken" in proc.stderr
    assert "analysing scans (rank 0 of 2)" in proc.stderr
    _same_outputs(out, scans["one"])


def test_a_killed_process_s_scans_are_redone_on_resume(scans, tmp_path) -> None:
    out = tmp_path / "killed"
    shutil.copytree(scans["one"], out)
    killed = scans["uids"][0::2]  # process 0 of 2's share of the three phantoms (sorted, dealt in turn)
    for uid in killed:
        (out / "scans" / f"{uid}.json").unlink()
    (out / "findings.csv").unlink()
    proc = run_lungtk(
        "pipeline", "run", scans["listing"], "--out", out, *COMPONENTS, "--nproc", "2", "--resume"
    )
    assert proc.returncode == 1, proc.stderr
    kept = len(scans["uids"]) - len(killed)
    assert f"3 scan(s) analysed ({kept} reused)" in proc.stderr
    _same_outputs(out, scans["one"])


def test_given_locations_work_sharded(scans, tmp_path) -> None:
    given = ("--candidates", scans["root"] / "ph" / "annotations.csv")
    folder = scans["root"] / "ph" / "subset0"
    runs = {}
    for nproc in ("1", "2"):
        out = tmp_path / f"given{nproc}"
        proc = run_lungtk("pipeline", "run", folder, "--out", out, *COMPONENTS[2:], *given, "--nproc", nproc)
        assert proc.returncode == 0, proc.stderr
        runs[nproc] = out
    assert (runs["2"] / "findings.csv").read_text() == (runs["1"] / "findings.csv").read_text()
    assert len((runs["1"] / "findings.csv").read_text().splitlines()) > 1
    assert _comparable(runs["2"]) == _comparable(runs["1"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--nproc", "0"), {}, "--nproc: 0 is out of range; use a whole number from 1 to 256"),
        (("--nproc", "257"), {}, "--nproc: 257 is out of range"),
        (
            ("--nproc", "2"),
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
            "--nproc 2: under torchrun (WORLD_SIZE=2) each rank is one process already",
        ),
        ((), {"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 but MASTER_ADDR and MASTER_PORT not set"),
        ((), {"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 with WORLD_SIZE=2: a rank is 0 to WORLD_SIZE-1"),
    ],
)
def test_a_bad_process_count_or_environment_is_one_line(scans, tmp_path, args, env, message) -> None:
    clean = {k: "" for k in ("MASTER_ADDR", "MASTER_PORT")}
    proc = run_lungtk(
        "pipeline", "run", scans["listing"], "--out", tmp_path / "o", *COMPONENTS, *args, env={**clean, **env}
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "scans").exists()
