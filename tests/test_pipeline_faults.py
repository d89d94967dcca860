"""``lungtk pipeline run`` with bad scans and faulty plugins, as a user meets them: one scan's failure is
one stderr line naming the scan, the component and its distribution; the other scans' results are
written; the exit status is 1; never a traceback or "internal error"."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from lungtk.core import Geometry
from lungtk.ct_io import write_image

FAULTY_PLUGIN = """
import numpy as np
from lungtk.core import Candidate, hookimpl


class Boom:
    def __init__(self, options):
        pass

    def detect(self, ct):
        if ct.series_uid == "s1":
            raise RuntimeError("model exploded [/x] on purpose")
        centre = ct.geometry.irc2xyz(np.array(ct.array.shape) // 2)
        return [Candidate(tuple(float(v) for v in centre), 8.0, 0.9)]


class NanClassifier:
    def __init__(self, options):
        pass

    def classify(self, ct, findings):
        p = float("nan") if ct.series_uid == "s2" else 0.3
        return [{"malignancy": {"benign": 0.5, "malignant": p}} for _ in findings]


@hookimpl
def lungtk_register_detectors(registry):
    registry.add("boom", Boom, summary="raises on scan s1", cpu_only=True)


@hookimpl
def lungtk_register_classifiers(registry):
    registry.add("nan-cls", NanClassifier, summary="NaN on scan s2", cpu_only=True)
"""


def _scan(folder: Path, name: str) -> Path:
    """24x40x40 voxels of lung with a ball of soft tissue at the centre."""
    grid = np.indices((24, 40, 40)).astype(float)
    mm = (grid - np.array([12, 20, 20.0])[:, None, None, None]) * np.array([1.5, 0.8, 0.8])[
        :, None, None, None
    ]
    hu = np.where(np.sqrt((mm**2).sum(axis=0)) <= 4.0, 40, -850).astype(np.int16)
    path = folder / f"{name}.mhd"
    write_image(path, hu, Geometry((-20.0, 10.0, -100.0), (0.8, 0.8, 1.5)))
    return path


@pytest.fixture
def scans(tmp_path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(4):
        _scan(folder, f"s{i}")
    return folder


def _centres(tmp_path: Path, uids) -> Path:
    """Given locations: the ball at the centre of each scan (patient mm)."""
    table = tmp_path / "centres.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\n" + "".join(f"{u},-4,26,-82\n" for u in uids))
    return table


def _csv_uids(out: Path) -> list[str]:
    with (out / "findings.csv").open(encoding="utf-8") as handle:
        return sorted({row["seriesuid"] for row in csv.DictReader(handle)})


def _strict(path: Path) -> dict:
    def refuse(name):
        raise AssertionError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _clean(proc) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def test_faulty_plugins_fail_their_scans_only_and_are_named(scans, tmp_path, lungtk_cli, plugin_site):
    plugin_site.add("acme-lungtk", FAULTY_PLUGIN, version="2.0")
    out = tmp_path / "out"
    proc = lungtk_cli(
        "pipeline", "run", "--preset", "classical", scans, "--out", out, "--detector", "boom", "--classifier", "nan-cls",
        env={"PYTHONPATH": str(plugin_site.root)}, check=1,
    )  # fmt: skip
    _clean(proc)
    assert proc.stdout.strip() == str(out)
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    assert failed == [
        "failed s1: detector 'boom' (acme-lungtk 2.0) failed in detect(): RuntimeError: model exploded [/x] on "
        "purpose; report this to the maintainers of acme-lungtk",
        "failed s2: classifier 'nan-cls' (acme-lungtk 2.0) returned malignancy.malignant = nan for finding 1, not "
        "a probability in 0..1; report this to the maintainers of acme-lungtk",
    ]
    assert "2 of 4 scan(s) failed: s1, s2" in proc.stderr
    assert _csv_uids(out) == ["s0", "s3"]
    summary = _strict(out / "findings.json")
    assert {s["seriesuid"]: s["status"] for s in summary["scans"]} == {
        "s0": "ok", "s1": "failed", "s2": "failed", "s3": "ok"
    }  # fmt: skip
    assert summary["scans"][1]["failure"]["distribution"] == "acme-lungtk"
    with (out / "findings.csv").open(encoding="utf-8") as handle:
        assert all(cell.lower() not in ("nan", "inf", "-inf") for row in csv.reader(handle) for cell in row)


@pytest.mark.parametrize(
    "dim_size", ["nan 40 24", "40 40", "-40 40 24", "40 40 1e30", "forty 40 24", "40.5 40 24"]
)
def test_a_bad_header_among_good_scans_fails_that_scan_only(scans, tmp_path, lungtk_cli, dim_size):
    header = scans / "s1.mhd"
    text = header.read_text()
    header.write_text(
        "\n".join(
            f"DimSize = {dim_size}" if line.startswith("DimSize") else line for line in text.splitlines()
        )
        + "\n"
    )
    out = tmp_path / "out"
    centres = _centres(tmp_path, ["s0", "s1", "s2", "s3"])
    proc = lungtk_cli(
        "pipeline", "run", "--preset", "classical", scans, "--out", out, "--candidates", centres, check=1
    )
    _clean(proc)
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed s1: ") and "s1.mhd" in failed[0]
    assert _csv_uids(out) == ["s0", "s2", "s3"]
    _strict(out / "findings.json")


def test_resume_analyses_a_scan_whose_voxels_changed(scans, tmp_path, lungtk_cli):
    out = tmp_path / "out"
    lungtk_cli("pipeline", "run", "--preset", "classical", scans, "--out", out, check=0)
    raw = scans / "s0.raw"
    stat = raw.stat()
    data = bytearray(raw.read_bytes())
    data[: len(data) // 2] = bytes(len(data) // 2)  # the same size; the time put back as it was
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = lungtk_cli("pipeline", "run", "--preset", "classical", scans, "--out", out, "--resume", check=0)
    assert "(3 reused)" in proc.stderr


@pytest.mark.parametrize("cycle", ["self", "pair"])
def test_a_looping_scan_list_is_one_line(scans, tmp_path, lungtk_cli, cycle):
    first = tmp_path / "a.txt"
    if cycle == "self":
        first.write_text("scans/s0.mhd\na.txt\n")
    else:
        first.write_text("scans/s0.mhd\nb.txt\n")
        (tmp_path / "b.txt").write_text("a.txt\n")
    proc = lungtk_cli("pipeline", "run", "--preset", "classical", first, "--out", tmp_path / "out", check=1)
    _clean(proc)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (
        "names the list itself" if cycle == "self" else "form a cycle (a.txt -> b.txt -> a.txt)"
    ) in proc.stderr


def test_a_scan_name_with_brackets_and_hash_reaches_the_user_verbatim(tmp_path, lungtk_cli):
    folder = tmp_path / "scans"
    folder.mkdir()
    _scan(folder, "scan#1 [bold]")
    (folder / "[red]broken.mhd").write_text("ObjectType = Image\nNDims = 3\nElementDataFile = nowhere.raw\n")
    out = tmp_path / "out[1]"
    centres = _centres(tmp_path, ["scan#1 [bold]"])
    proc = lungtk_cli(
        "pipeline", "run", "--preset", "classical", folder, "--out", out, "--candidates", centres, check=1
    )
    _clean(proc)
    assert proc.stdout.strip() == str(out)
    assert "failed [red]broken: " in proc.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "src='thumbnails/scan%231%20%5Bbold%5D/" in page
