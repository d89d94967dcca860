"""``lungtk pipeline run`` end to end, as a user runs it: phantoms in, every output checked against an
independent reader (SimpleITK for masks, the fleischner reader for findings.json, the FROC evaluator)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_lungtk

SHAPE = "96,160,160"


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("pipeline")
    phantoms = root / "ph"
    made = run_lungtk("phantom", "--out", phantoms, "--n", "2", "--seed", "31", "--shape", SHAPE)
    assert made.returncode == 0, made.stderr
    broken = root / "broken.mhd"
    broken.write_text("ObjectType = Image\nNDims = 3\nElementDataFile = nowhere.raw\n")
    listing = root / "scans.txt"
    listing.write_text("# one folder and one broken file\nph/subset0\nbroken.mhd\n")
    out = root / "out"
    proc = run_lungtk("pipeline", "run", listing, "--out", out, "--threshold", "0.2")
    return phantoms, out, proc


def test_run_reports_the_unreadable_scan_and_finishes_the_others(pipeline_run) -> None:
    phantoms, out, proc = pipeline_run
    assert proc.returncode == 1
    assert proc.stdout.strip() == str(out)  # stdout: only the output folder
    assert "broken" in proc.stderr and "Traceback" not in proc.stderr
    assert re.search(r"time per stage: read [\d.]+s, detect [\d.]+s", proc.stderr)
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    status = {s["seriesuid"]: s["status"] for s in summary["scans"]}
    uids = [p.name[:-4] for p in sorted((phantoms / "subset0").glob("*.mhd"))]
    assert status == {**dict.fromkeys(uids, "ok"), "broken": "failed"}
    assert summary["components"]["detector"] == {
        "name": "blob",
        "distribution": "lungtk-detect",
        "version": summary["components"]["detector"]["version"],
    }
    assert summary["device"] == "cpu"
    assert set(summary["timings_s"]) >= {"read", "detect", "segment", "classify", "fleischner", "write"}


def test_findings_csv_has_luna16_columns_and_valid_values(pipeline_run) -> None:
    _, out, _ = pipeline_run
    rows = list(csv.DictReader((out / "findings.csv").open()))
    assert list(rows[0]) == [
        "seriesuid",
        "coordX",
        "coordY",
        "coordZ",
        "probability",
        "diameter_mm",
        "volume_mm3",
        "texture",
        "malignancy",
    ]
    for row in rows:
        assert 0 <= float(row["probability"]) <= 1
        assert row["texture"] in {"ground-glass", "part-solid", "solid"}
    per_scan = {}
    for row in rows:
        per_scan.setdefault(row["seriesuid"], []).append(float(row["probability"]))
    assert all(p == sorted(p, reverse=True) for p in per_scan.values())


def test_masks_sit_in_the_scans_geometry(pipeline_run) -> None:
    sitk = pytest.importorskip("SimpleITK")
    phantoms, out, _ = pipeline_run
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    threshold = 0.2
    for scan in (s for s in summary["scans"] if s["status"] == "ok"):
        uid = scan["seriesuid"]
        image = sitk.ReadImage(str(phantoms / "subset0" / f"{uid}.mhd"))
        mask = sitk.ReadImage(str(out / scan["mask"]))
        assert mask.GetSize() == image.GetSize()
        assert np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-3)
        assert np.allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-5)
        labels = sitk.GetArrayFromImage(mask)
        for f in (f for f in summary["findings"] if f["seriesuid"] == uid):
            voxels = int((labels == f["finding"]).sum())
            if f["probability"] < threshold or not f["volume_mm3"]:
                assert voxels == 0
                continue
            # The label's voxels make up the reported volume, around the reported centre.
            assert voxels * np.prod(image.GetSpacing()) == pytest.approx(f["volume_mm3"], rel=0.02)
            idx = mask.TransformPhysicalPointToIndex((f["coordX"], f["coordY"], f["coordZ"]))
            k, r, c = idx[2], idx[1], idx[0]
            assert (
                labels[max(k - 3, 0) : k + 4, max(r - 6, 0) : r + 7, max(c - 6, 0) : c + 7] == f["finding"]
            ).any()


def test_findings_json_feeds_the_fleischner_command(pipeline_run, lungtk_cli) -> None:
    _, out, _ = pipeline_run
    proc = lungtk_cli(
        "fleischner", "recommend", out / "findings.json", "--format", "json", "--min-prob", "0.2", check=0
    )
    from_cli = {r["patient"]: r["category"] for r in json.loads(proc.stdout)}
    written = json.loads((out / "fleischner.json").read_text(encoding="utf-8"))
    from_run = {r["patient"]: r["category"] for r in written["recommendations"]}
    # Scans without a finding at 0.2 are absent from findings.json's rows but present in fleischner.json.
    assert all(from_run[p] == c for p, c in from_cli.items())
    assert written["scheme"] == "fleischner2017"


def test_report_shows_every_scan_and_its_thumbnails(pipeline_run) -> None:
    _, out, _ = pipeline_run
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    for scan in summary["scans"]:
        assert scan["seriesuid"] in page
    images = re.findall(r"<img src='([^']+)'", page)
    reported = [f for f in summary["findings"] if f["probability"] >= 0.2]
    assert len(images) == 3 * min(len(reported), 12 * 2)
    for src in images:
        data = (out / src).read_bytes()
        assert data.startswith(b"\x89PNG")


def test_froc_of_the_run_is_computable(pipeline_run, lungtk_cli) -> None:
    phantoms, out, _ = pipeline_run
    proc = lungtk_cli(
        "eval",
        "froc",
        "--findings",
        out / "findings.csv",
        "--annotations",
        phantoms / "annotations.csv",
        "--excluded",
        phantoms / "annotations_excluded.csv",
        "--json",
        check=0,
    )
    result = json.loads(proc.stdout)
    assert 0.0 <= result["cpm"] <= 1.0


def test_resume_reuses_finished_scans(pipeline_run, tmp_path) -> None:
    phantoms, out, _ = pipeline_run
    before = (out / "findings.csv").read_text(encoding="utf-8")
    proc = run_lungtk("pipeline", "run", phantoms / "subset0", "--out", out, "--threshold", "0.2", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "2 reused" in proc.stderr
    assert (out / "findings.csv").read_text(encoding="utf-8") == before


def test_unknown_component_suggests_names(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli("pipeline", "run", tmp_path, "--out", tmp_path / "o", "--detector", "blobb", check=1)
    assert "unknown detector 'blobb'" in proc.stderr and "did you mean 'blob'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unwritable_output_folder_is_one_clear_line(pipeline_run, tmp_path, lungtk_cli) -> None:
    phantoms, _, _ = pipeline_run
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = lungtk_cli("pipeline", "run", phantoms / "subset0", "--out", blocker / "out", check=1)
    assert "cannot write the output folder" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_device_is_refused(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli("pipeline", "run", tmp_path, "--out", tmp_path / "o", "--device", "tpu", check=1)
    assert "--device 'tpu'" in proc.stderr


def test_demo_runs_out_of_the_box(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli("demo", "--out", tmp_path / "demo", check=0)
    assert "Fleischner 2017, category" in proc.stdout
    assert "the phantom's nodules" in proc.stdout
    assert (tmp_path / "demo" / "results" / "report.html").is_file()
    assert (tmp_path / "demo" / "results" / "findings.csv").is_file()
