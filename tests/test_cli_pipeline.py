"""``lungtk pipeline run`` end to end, as a user runs it: phantoms in, every output checked against an
independent reader (SimpleITK for masks, the fleischner reader for findings.json, the FROC evaluator and
the LUNA16 rules computed here) and against the phantom's truth."""

from __future__ import annotations

import csv
import json
import math
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from conftest import run_lungtk
from lungtk.core.presets import DEFAULT_THRESHOLD, get_preset

SHAPE = "96,160,160"
THRESHOLD = 0.2
THUMBNAILS_PER_SCAN = 12  # the report shows each scan's 12 most probable reported findings


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
    proc = run_lungtk(
        "pipeline", "run", "--preset", "classical", listing, "--out", out, "--threshold", str(THRESHOLD)
    )
    return phantoms, out, proc


def _reported(findings: list[dict], uid: str) -> list[dict]:
    """A scan's findings at the threshold or above, most probable first."""
    rows = [f for f in findings if f["seriesuid"] == uid and f["probability"] >= THRESHOLD]
    return sorted(rows, key=lambda f: -f["probability"])


def _thumbnails_by_scan(page: str) -> dict[str, list[tuple[str, int]]]:
    """(plane, finding) of every <img> in each scan's section of report.html."""
    sections = re.split(r"<h2 id='([^']+)'>", page)[1:]
    return {
        uid: [(p, int(n)) for p, n in re.findall(r"alt='(\w+) slice through finding (\d+)'", body)]
        for uid, body in zip(sections[::2], sections[1::2], strict=True)
    }


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
    expected = {"detector": ("blob", "lungtk-detect"), "segmenter": ("regiongrow", "lungtk-seg")}
    for role, (name, distribution) in expected.items():
        assert summary["components"][role] == {
            "name": name,
            "distribution": distribution,
            "version": version(distribution),
        }
    assert summary["components"]["classifiers"] == [
        {"name": "size", "distribution": "lungtk-cls", "version": version("lungtk-cls")}
    ]
    assert summary["lungtk_pipeline"] == version("lungtk-pipeline")
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
        "pathology",
    ]
    for row in rows:
        assert 0 <= float(row["probability"]) <= 1
        assert row["texture"] in {"ground-glass", "part-solid", "solid"}
    per_scan = {}
    for row in rows:
        per_scan.setdefault(row["seriesuid"], []).append(float(row["probability"]))
    assert len(per_scan) == 2 and all(len(p) > 1 for p in per_scan.values())  # both phantoms, not "broken"
    assert all(p == sorted(p, reverse=True) for p in per_scan.values())
    # The CSV holds what findings.json holds, row for row.
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert [(r["seriesuid"], float(r["probability"])) for r in rows] == [
        (f["seriesuid"], f["probability"]) for f in summary["findings"]
    ]


def test_masks_sit_in_the_scans_geometry(pipeline_run) -> None:
    sitk = pytest.importorskip("SimpleITK")
    phantoms, out, _ = pipeline_run
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    checked = 0
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
            if f["probability"] < THRESHOLD or not f["volume_mm3"]:
                assert voxels == 0
                continue
            checked += 1
            # The label's voxels make up the reported volume, around the reported centre.
            assert voxels * np.prod(image.GetSpacing()) == pytest.approx(f["volume_mm3"], rel=0.02)
            idx = mask.TransformPhysicalPointToIndex((f["coordX"], f["coordY"], f["coordZ"]))
            k, r, c = idx[2], idx[1], idx[0]
            assert (
                labels[max(k - 3, 0) : k + 4, max(r - 6, 0) : r + 7, max(c - 6, 0) : c + 7] == f["finding"]
            ).any()
    assert checked > 0  # at least one reported finding with a mask was compared


def test_findings_json_feeds_the_fleischner_command(pipeline_run, lungtk_cli) -> None:
    _, out, _ = pipeline_run
    proc = lungtk_cli(
        "fleischner",
        "recommend",
        out / "findings.json",
        "--format",
        "json",
        "--min-prob",
        str(THRESHOLD),
        check=0,
    )
    fields = ("category", "driver", "nodules")
    from_cli = {r["patient"]: tuple(r[k] for k in fields) for r in json.loads(proc.stdout)}
    written = json.loads((out / "fleischner.json").read_text(encoding="utf-8"))
    from_run = {r["patient"]: tuple(r[k] for k in fields) for r in written["recommendations"]}
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    ok = {s["seriesuid"] for s in summary["scans"] if s["status"] == "ok"}
    assert set(from_cli) == set(from_run) == ok
    assert from_cli == from_run
    assert sum(n for _, _, n in from_run.values()) > 0  # some nodule drove a recommendation
    assert written["scheme"] == "fleischner2017"


def test_report_shows_every_scan_and_its_thumbnails(pipeline_run) -> None:
    _, out, _ = pipeline_run
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert len(summary["scans"]) == 3
    for scan in summary["scans"]:
        assert scan["seriesuid"] in page
    shown = _thumbnails_by_scan(page)
    ok = [s["seriesuid"] for s in summary["scans"] if s["status"] == "ok"]
    assert set(shown) == set(ok)
    for uid in ok:
        top = [f["finding"] for f in _reported(summary["findings"], uid)][:THUMBNAILS_PER_SCAN]
        assert sorted(shown[uid]) == sorted((p, n) for n in top for p in ("axial", "coronal", "sagittal"))
    images = re.findall(r"<img src='([^']+)'", page)
    assert images  # some finding is reported at the threshold
    for src in images:
        data = (out / src).read_bytes()
        assert data.startswith(b"\x89PNG")


def test_thumbnails_are_capped_per_scan(pipeline_run, tmp_path) -> None:
    """Given locations with known probabilities: one scan has more reported findings than the cap, the
    other fewer; each shows its own most probable ones, up to the cap."""
    phantoms, _, _ = pipeline_run
    candidates = list(csv.DictReader((phantoms / "candidates.csv").open(encoding="utf-8")))
    many, few = sorted({c["seriesuid"] for c in candidates})
    probabilities = {
        many: [0.99 - 0.02 * i for i in range(THUMBNAILS_PER_SCAN + 3)],
        few: [0.9, 0.8, 0.7, 0.3],
    }
    given = tmp_path / "given.csv"
    with given.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "probability"])
        for uid, probs in probabilities.items():
            rows = [c for c in candidates if c["seriesuid"] == uid][: len(probs)]
            assert len(rows) == len(probs)
            writer.writerows(
                [uid, r["coordX"], r["coordY"], r["coordZ"], p] for r, p in zip(rows, probs, strict=True)
            )
    out = tmp_path / "out"
    proc = run_lungtk(
        "pipeline",
        "run",
        "--preset",
        "classical",
        phantoms / "subset0",
        "--candidates",
        given,
        "--out",
        out,
        "--threshold",
        "0.5",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    shown = _thumbnails_by_scan((out / "report.html").read_text(encoding="utf-8"))
    expected = {many: THUMBNAILS_PER_SCAN, few: 3}  # 15 reported, capped; 3 reported (0.3 is not)
    for uid, count in expected.items():
        by_probability = sorted(
            (f for f in summary["findings"] if f["seriesuid"] == uid), key=lambda f: -f["probability"]
        )
        top = {f["finding"] for f in by_probability[:count]}
        assert {n for _, n in shown[uid]} == top and len(shown[uid]) == 3 * count
        assert len(list((out / "thumbnails" / uid).glob("*.png"))) == 3 * count


def _luna16_froc(findings: Path, annotations: Path, excluded: Path) -> dict[str, float]:
    """CPM, nodules detected and false positives by the LUNA16 rules, computed here from the tables, one
    threshold at a time: a mark hits a nodule within its radius, a nodule counts once, marks on excluded
    findings are ignored, each scan's 100 most probable marks count."""

    def rows(path: Path) -> list[dict]:
        return list(csv.DictReader(path.open(encoding="utf-8")))

    def xyz(row: dict) -> tuple[float, ...]:
        return tuple(float(row[c]) for c in ("coordX", "coordY", "coordZ"))

    nodules = [(r["seriesuid"], xyz(r), float(r["diameter_mm"])) for r in rows(annotations)]
    ignored = [(r["seriesuid"], xyz(r), float(r["diameter_mm"]) or 10.0) for r in rows(excluded)]
    marks_by_scan: dict[str, list[tuple[float, tuple[float, ...]]]] = {}
    for r in rows(findings):
        marks_by_scan.setdefault(r["seriesuid"], []).append((float(r["probability"]), xyz(r)))
    marks = []  # (probability, nodules hit, on an excluded finding)
    for uid, scan_marks in marks_by_scan.items():
        for p, at in sorted(scan_marks, key=lambda m: -m[0])[:100]:
            hits = {i for i, (u, c, d) in enumerate(nodules) if u == uid and math.dist(at, c) <= d / 2}
            on_excluded = any(u == uid and math.dist(at, c) <= d / 2 for u, c, d in ignored)
            marks.append((p, hits, on_excluded))
    scans = set(marks_by_scan) | {u for u, _, _ in nodules}
    curve = []
    for t in sorted({p for p, _, _ in marks}):
        kept = [m for m in marks if m[0] >= t]
        found = set().union(*(h for _, h, _ in kept))
        false = sum(1 for _, h, e in kept if not h and not e)
        curve.append((false / len(scans), len(found) / len(nodules)))
    rates = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    return {
        "cpm": sum(max((s for f, s in curve if f <= r), default=0.0) for r in rates) / len(rates),
        "detected": len(set().union(*(h for _, h, _ in marks))),
        "false_positives": sum(1 for _, h, e in marks if not h and not e),
    }


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
    truth = phantoms / "annotations.csv"
    assert result["nodules"] == len(truth.read_text(encoding="utf-8").splitlines()) - 1 > 0
    expected = _luna16_froc(out / "findings.csv", truth, phantoms / "annotations_excluded.csv")
    assert result["cpm"] == pytest.approx(expected["cpm"], abs=1e-6)
    assert (result["detected"], result["false_positives"]) == (
        expected["detected"],
        expected["false_positives"],
    )
    # The baseline finds most phantom nodules among its 100 marks per scan (33 of 39 on the README's 20
    # phantoms); coordinates written in the wrong frame or order would find none.
    assert result["detected"] >= result["nodules"] / 2 and result["cpm"] > 0


def test_report_marks_each_annotated_nodule_found_or_missed(pipeline_run, tmp_path) -> None:
    phantoms = pipeline_run[0]
    out = tmp_path / "out"
    proc = run_lungtk(
        "pipeline", "run", "--preset", "classical", phantoms / "subset0", "--out", out,
        "--threshold", str(THRESHOLD),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"annotations: {phantoms / 'annotations.csv'}" in proc.stderr  # the data set's, found by itself
    with (out / "findings.csv").open(encoding="utf-8") as handle:
        reported = [r for r in csv.DictReader(handle) if float(r["probability"]) >= THRESHOLD]
    with (phantoms / "annotations.csv").open(encoding="utf-8") as handle:
        nodules = list(csv.DictReader(handle))

    def hits(finding: dict, nodule: dict) -> bool:  # LUNA16: within the nodule's radius of its centre
        d = [float(finding[c]) - float(nodule[c]) for c in ("coordX", "coordY", "coordZ")]
        same = finding["seriesuid"] == nodule["seriesuid"]
        return same and math.sqrt(sum(v * v for v in d)) <= float(nodule["diameter_mm"]) / 2

    found = sum(any(hits(f, n) for f in reported) for n in nodules)
    false = sum(not any(hits(f, n) for n in nodules) for f in reported)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"{found} of {len(nodules)} nodule(s) found" in page
    assert f"{false} reported finding(s) hit no annotated nodule" in page
    assert page.count("missed</td>") == len(nodules) - found and 0 < found < len(nodules) + 1


def test_a_data_set_s_own_annotations_it_cannot_use_are_left_out_with_a_warning(tmp_path) -> None:
    from lungtk.core import Geometry
    from lungtk.ct_io import write_image

    data = tmp_path / "data"
    hu = np.full((24, 40, 40), -850, np.int16)
    hu[10:14, 18:22, 18:22] = 40
    write_image(data / "subset0" / "scan-a.mhd", hu, Geometry((0.0, 0.0, 0.0), (0.8, 0.8, 1.5)))
    (data / "annotations.csv").write_text("seriesuid,x,y,z,class\nscan-a,1,2,3,1\n")  # another format
    out = tmp_path / "out"
    proc = run_lungtk("pipeline", "run", "--preset", "classical", data / "subset0", "--out", out)
    assert proc.returncode == 0, proc.stderr  # not asked for: it does not stop the run
    assert "warning:" in proc.stderr and "annotations.csv: no column" in proc.stderr
    assert "Against the annotations" not in (out / "report.html").read_text(encoding="utf-8")
    given = run_lungtk(
        "pipeline", "run", "--preset", "classical", data / "subset0", "--out", out,
        "--annotations", data / "annotations.csv",
    )  # fmt: skip
    assert given.returncode == 1 and "annotations.csv: no column" in given.stderr  # asked for: an error
    assert len(given.stderr.strip().splitlines()) == 1


def test_resume_reuses_finished_scans(pipeline_run, tmp_path) -> None:
    phantoms, out, _ = pipeline_run
    before = (out / "findings.csv").read_text(encoding="utf-8")
    proc = run_lungtk(
        "pipeline",
        "run",
        "--preset",
        "classical",
        phantoms / "subset0",
        "--out",
        out,
        "--threshold",
        str(THRESHOLD),
        "--resume",
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 reused" in proc.stderr
    assert (out / "findings.csv").read_text(encoding="utf-8") == before


def test_unknown_component_suggests_names(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli(
        "pipeline",
        "run",
        "--preset",
        "classical",
        tmp_path,
        "--out",
        tmp_path / "o",
        "--detector",
        "blobb",
        check=1,
    )
    assert "unknown detector 'blobb'" in proc.stderr and "did you mean 'blob'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unwritable_output_folder_is_one_clear_line(pipeline_run, tmp_path, lungtk_cli) -> None:
    phantoms, _, _ = pipeline_run
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = lungtk_cli(
        "pipeline", "run", "--preset", "classical", phantoms / "subset0", "--out", blocker / "out", check=1
    )
    assert "cannot write the output folder" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_device_is_refused(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli(
        "pipeline",
        "run",
        "--preset",
        "classical",
        tmp_path,
        "--out",
        tmp_path / "o",
        "--device",
        "tpu",
        check=1,
    )
    assert "--device 'tpu'" in proc.stderr


def test_demo_runs_the_learned_and_the_classical_pipelines(tmp_path, lungtk_cli) -> None:
    proc = lungtk_cli("demo", "--out", tmp_path / "demo", check=0)
    assert "Fleischner 2017 category" in proc.stdout
    assert "the phantom's nodules" in proc.stdout and "found: learned" in proc.stdout
    for name, detector in (("learned", "nodulenet"), ("classical", "blob")):
        assert (tmp_path / "demo" / name / "report.html").is_file()
        summary = json.loads((tmp_path / "demo" / name / "findings.json").read_text(encoding="utf-8"))
        assert summary["components"]["detector"]["name"] == detector


def test_without_options_the_learned_preset_runs(pipeline_run, tmp_path, lungtk_cli) -> None:
    phantoms = pipeline_run[0]
    given = tmp_path / "given.csv"  # given locations: the learned segmenter and classifiers, no detection
    truth = (phantoms / "annotations.csv").read_text(encoding="utf-8").splitlines()
    given.write_text("\n".join(truth[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    lungtk_cli("pipeline", "run", phantoms / "subset0", "--candidates", given, "--out", out, check=0)
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    learned = get_preset("learned")  # the default
    assert summary["components"]["segmenter"]["name"] == learned.segmenter
    assert tuple(c["name"] for c in summary["components"]["classifiers"]) == learned.classifiers
    assert summary["threshold"] == DEFAULT_THRESHOLD  # given locations: not the preset detector's scores
    out = tmp_path / "replaced"
    lungtk_cli(
        "pipeline", "run", phantoms / "subset0", "--candidates", given, "--out", out,
        "--preset", "classical", "--classifier", "malignancy-cnn", check=0,
    )  # fmt: skip
    summary = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    assert summary["components"]["segmenter"]["name"] == "regiongrow"  # the preset's
    assert [c["name"] for c in summary["components"]["classifiers"]] == ["malignancy-cnn"]  # replaced
