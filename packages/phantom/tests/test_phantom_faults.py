"""A phantom set is written whole or not at all, never into a folder holding something else, and bad
options are one line naming the option. Option checks run before any scan is drawn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lungtk.core import LungtkError
from lungtk.ct_io.points import find_scans
from lungtk.phantom import write_phantoms

TINY = (32, 64, 64)


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        ({"seed": -1}, "--seed must be a whole number, 0 or more; got -1"),
        ({"n": 0}, "--n must be a whole number of scans, at least 1; got 0"),
        ({"n": -3}, "--n must be"),
        ({"shape": (16, 64, 64)}, "too small for a chest"),
        ({"shape": (100000, 64, 64)}, "too large for a phantom"),
        ({"shape": (1024, 1024, 1024)}, "too large for a phantom"),
        ({"spacing": (float("nan"), 1.0, 1.0)}, "--spacing takes three voxel sizes"),
        ({"spacing": (float("inf"), 1.0, 1.0)}, "--spacing takes three voxel sizes"),
        ({"spacing": (0.0, 1.0, 1.0)}, "--spacing takes three voxel sizes"),
        ({"spacing": (1e-9, 1.0, 1.0)}, "--spacing takes three voxel sizes"),
        ({"spacing": (500.0, 1.0, 1.0)}, "--spacing takes three voxel sizes"),
        ({"fmt": "png"}, "unknown phantom format"),
        ({"shapes": "blobs"}, "unknown nodule shapes"),
        ({"n_nodules": -1}, "nodules per scan must be 0-50"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, pattern):
    args = {"n": 1, "seed": 0, "shape": TINY, **options}
    with pytest.raises(LungtkError, match=pattern):
        write_phantoms(tmp_path / "out", args.pop("n"), args.pop("seed"), **args)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LungtkError, match="not empty and holds no lungtk phantom set"):
        write_phantoms(tmp_path / "mine", 1, shape=TINY, shapes="parametric")
    with pytest.raises(LungtkError, match="not empty"):  # --overwrite never deletes other files
        write_phantoms(tmp_path / "mine", 1, shape=TINY, shapes="parametric", overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(LungtkError, match="is a file, not a folder"):
        write_phantoms(tmp_path / "file", 1, shape=TINY, shapes="parametric")
    with pytest.raises(LungtkError, match=r"cannot create the output folder \(.*file is a file"):
        write_phantoms(tmp_path / "file" / "sub" / "x", 1, shape=TINY, shapes="parametric")


def test_another_configuration_is_refused_and_the_same_one_is_kept(tmp_path):
    out = tmp_path / "set"
    out.mkdir()  # an empty folder is fine
    first = write_phantoms(out, 1, seed=1, shape=TINY, shapes="parametric")
    assert first.written
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for options, what in (
        ({"seed": 2}, "seed 1 there, 2 now"),
        ({"n": 2}, "n 1 there, 2 now"),
        ({"fmt": "nii.gz"}, "format 'mhd' there, 'nii.gz' now"),
        ({"n_nodules": 2}, "n_nodules None there, 2 now"),
    ):
        args = {"n": 1, "seed": 1, **options}
        with pytest.raises(LungtkError, match=f"holds another phantom set .*{what}.*--overwrite"):
            write_phantoms(out, args.pop("n"), args.pop("seed"), shape=TINY, shapes="parametric", **args)
    again = write_phantoms(out, 1, seed=1, shape=TINY, shapes="parametric")
    assert not again.written and again.scans == first.scans
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == files  # nothing rewritten

    replaced = write_phantoms(out, 2, seed=2, shape=TINY, shapes="parametric", overwrite=True)
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["config"]["seed"] == 2 and meta["n"] == 2
    assert sorted(find_scans(out).values()) == sorted(replaced.scans)  # the old scan is gone
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no staging folder left beside it


def test_a_killed_run_leaves_nothing_in_the_target_and_its_staging_is_cleaned_later(tmp_path):
    out = tmp_path / "set"

    def boom(i, scan):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_phantoms(out, 2, seed=3, shape=TINY, shapes="parametric", on_scan=boom)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    stale = tmp_path / ".set.phantom-k1ll3d"  # what a SIGKILL leaves
    (stale / "subset0").mkdir(parents=True)
    old = time.time() - 7 * 3600
    os.utime(stale, (old, old))
    write_phantoms(out, 1, seed=3, shape=TINY, shapes="parametric")
    assert not stale.exists()


WRITER = """
import sys
from lungtk.core import LungtkError
from lungtk.phantom import write_phantoms
try:
    write_phantoms(sys.argv[1], 1, seed=int(sys.argv[2]), shape=(32, 64, 64), shapes="parametric")
    print("ok")
except LungtkError as exc:
    print(exc)
"""


def test_concurrent_runs_never_mix_their_files(tmp_path):
    for seeds, name in (((4, 4), "same"), ((4, 5), "different")):
        out = tmp_path / name
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(out), str(s)], stdout=subprocess.PIPE, text=True
            )
            for s in seeds
        ]
        results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
        meta = json.loads((out / "phantom.json").read_text())
        assert len(find_scans(out)) == 1 and meta["n"] == 1
        if name == "same":
            assert results == ["ok", "ok"]
        else:  # one wins whole, the other says so
            assert results[1] == "ok" and "another" in results[0], results
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_full_disk_names_the_set_not_a_hidden_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "set"
    with pytest.raises(LungtkError, match=f"^{out}: cannot write the phantom set: the disk is full") as err:
        write_phantoms(out, 1, shape=TINY, shapes="parametric")
    assert ".tmp" not in str(err.value) and ".phantom-" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
