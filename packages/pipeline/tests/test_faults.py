"""Bad input and faults, with stub components: a component that raises or breaks its contract fails its
scan only (named with the distribution that registered it) and the run goes on; findings.json stays strict
JSON; --resume reuses a scan's results only while its files are unchanged; scan lists cannot loop; an
output that cannot be written names the file, not a temporary one."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from lungtk.core import Candidate, ComponentSpec, Geometry, LungtkError, NoduleMask, Registry
from lungtk.ct_io import write_image
from lungtk.pipeline import GivenCandidates, Pipeline, expand_scans, run
from lungtk.pipeline.identity import source_identity
from lungtk.pipeline.run import OutputError


def _scan(folder: Path, name: str) -> Path:
    """A 24x40x40 volume of lung (-850 HU) with a ball of soft tissue at its centre."""
    grid = np.indices((24, 40, 40)).astype(float)
    mm = (grid - np.array([12, 20, 20.0])[:, None, None, None]) * np.array([1.5, 0.8, 0.8])[
        :, None, None, None
    ]
    hu = np.where(np.sqrt((mm**2).sum(axis=0)) <= 4.0, 40, -850).astype(np.int16)
    path = folder / f"{name}.mhd"
    write_image(path, hu, Geometry((-20.0, 10.0, -100.0), (0.8, 0.8, 1.5)))
    return path


class StubDetector:
    """One candidate at the scan's centre voxel."""

    def __init__(self, options):
        self.options = options

    def detect(self, ct):
        centre = ct.geometry.irc2xyz(np.array(ct.array.shape) // 2)
        return [Candidate(tuple(centre), float(self.options.settings.get("diameter_mm", 8.0)), 0.9)]


class StubSegmenter:
    """A ball of the candidate's diameter in a 9-voxel cube on the scan's grid."""

    def __init__(self, options):
        self.options = options

    def segment(self, ct, candidates):
        masks = []
        for c in candidates:
            geometry = ct.geometry.shifted(ct.geometry.xyz2irc(c.center_xyz) - 4)
            mm = (np.indices((9, 9, 9)) - 4) * ct.geometry.spacing_irc[:, None, None, None]
            masks.append(NoduleMask(np.sqrt((mm**2).sum(0)) <= c.diameter_mm / 2, geometry))
        return masks


class StubClassifier:
    def __init__(self, options):
        self.options = options

    def classify(self, ct, findings):
        p = float(self.options.settings["malignant"])
        return [{"malignancy": {"benign": 1 - p, "malignant": p}} for _ in findings]


DIST = "acme-lungtk"
BAD_SCAN = "s1"  # the bad behaviour hits this scan only; s0 and s2 must come through


def _centre(ct) -> tuple[float, float, float]:
    return tuple(float(v) for v in ct.geometry.irc2xyz(np.array(ct.array.shape) // 2))


def _candidate(ct, **fields) -> Candidate:
    """A valid candidate at the scan's centre, then ``fields`` forced in past its own checks (a plugin
    can build such an object)."""
    c = Candidate(_centre(ct), 8.0, 0.9)
    for name, value in fields.items():
        object.__setattr__(c, name, value)
    return c


def _bad(good, bad):
    """A component method that behaves as ``good`` on every scan but BAD_SCAN, where it does ``bad``."""

    def method(self, ct, *args):
        return (bad if ct.series_uid == BAD_SCAN else good)(self, ct, *args)

    return method


def _good_detect(self, ct):
    return [Candidate(_centre(ct), 8.0, 0.9)]


def _raise(exc):
    def method(self, ct, *args):
        raise exc

    return method


def _exit(self, ct, *args):
    sys.exit(3)


def _scans(tmp_path: Path, n: int = 3) -> list[tuple[str, Path]]:
    return expand_scans([_scan(tmp_path, f"s{i}") for i in range(n)])


def _registry_with(kind: str, method: str, behaviour) -> Registry:
    """The stub registry plus ``bad-<kind>`` from DIST whose ``method`` is ``behaviour``."""
    base = {"detector": StubDetector, "segmenter": StubSegmenter, "classifier": StubClassifier}[kind]
    cls = type(f"Bad{kind.title()}", (base,), {method: behaviour})
    registry = Registry()
    settings = {"detector": {"diameter_mm": 8.0}, "classifier": {"malignant": 0.25}}
    registry.add(ComponentSpec("stub-det", "detector", StubDetector, settings={"diameter_mm": 8.0}))
    registry.add(ComponentSpec("stub-seg", "segmenter", StubSegmenter, cpu_only=True))
    registry.add(ComponentSpec("stub-cls", "classifier", StubClassifier, settings={"malignant": 0.25}))
    registry.add(
        ComponentSpec(
            f"bad-{kind}", kind, cls, distribution=DIST, version="9.9", settings=settings.get(kind, {})
        )
    )
    return registry


def _pipeline(kind: str, method: str, behaviour) -> Pipeline:
    registry = _registry_with(kind, method, behaviour)
    names = {"detector": "stub-det", "segmenter": "stub-seg", "classifier": "stub-cls"}
    names[kind] = f"bad-{kind}"
    return Pipeline.from_registry(
        registry, names["detector"], names["segmenter"], [names["classifier"]], device="cpu"
    )


def _strict_json(path: Path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _assert_only_bad_scan_failed(summary, out: Path, kind: str, message: str) -> dict:
    (failed,) = summary.failed
    assert failed["seriesuid"] == BAD_SCAN
    assert re.search(message, failed["error"]), failed["error"]
    assert f"{kind} 'bad-{kind}' ({DIST} 9.9)" in failed["error"]
    assert "\n" not in failed["error"]
    assert failed["failure"]["distribution"] == DIST and failed["failure"]["component"] == f"bad-{kind}"
    with (out / "findings.csv").open() as handle:
        assert sorted({r["seriesuid"] for r in csv.DictReader(handle)}) == ["s0", "s2"]
    written = _strict_json(out / "findings.json")
    status = {s["seriesuid"]: s["status"] for s in written["scans"]}
    assert status == {"s0": "ok", "s1": "failed", "s2": "ok"}
    assert written["failed"] == 1
    _strict_json(out / "fleischner.json")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Not analysed" in page and DIST in page
    return failed


DETECTOR_FAULTS = [
    (lambda self, ct: None, r"returned None instead of a list of Candidate"),
    (lambda self, ct: _candidate(ct), r"returned a Candidate instead of a list"),
    (lambda self, ct: {"x": 1}, r"returned a dict instead of a list"),
    (lambda self, ct: "candidates", r"returned a str instead of a list"),
    (lambda self, ct: [{"coordX": 0}], r"a dict as candidate 1, not a lungtk.core.Candidate"),
    (lambda self, ct: [_candidate(ct), None], r"None as candidate 2"),
    (lambda self, ct: [_candidate(ct, center_xyz=(float("nan"), 0.0, 0.0))], r"not 3 finite numbers"),
    (lambda self, ct: [_candidate(ct, center_xyz=(1.0, 2.0))], r"center_xyz \(1.0, 2.0\), not 3 numbers"),
    (lambda self, ct: [_candidate(ct, probability=2.0)], r"probability 2.0, not a number in 0..1"),
    (lambda self, ct: [_candidate(ct, probability=float("nan"))], r"probability nan"),
    (lambda self, ct: [_candidate(ct, probability="high")], r"probability 'high'"),
    (lambda self, ct: [_candidate(ct, diameter_mm=float("inf"))], r"diameter_mm inf"),
    (lambda self, ct: [_candidate(ct, diameter_mm=-3.0)], r"diameter_mm -3.0"),
    (lambda self, ct: [_candidate(ct, box_mm=(0, 0, 0, 1, 1))], r"box_mm"),
    (
        lambda self, ct: [Candidate((1e6, 0.0, 0.0), 8.0, 0.9)],
        r"candidate 1 at \(1e\+06, 0, 0\) mm, outside the scan",
    ),
    (lambda self, ct: [Candidate(ct.geometry.irc2xyz([-20, 0, 0]), 8.0, 0.5)], r"outside the scan \(x "),
    (
        _raise(RuntimeError("model exploded\nsecond line")),
        r"failed in detect\(\): RuntimeError: model exploded;",
    ),
    (_raise(MemoryError()), r"failed in detect\(\): MemoryError;"),
    (_raise(KeyError("weights")), r"failed in detect\(\): KeyError: 'weights'"),
    (
        _raise(LungtkError("needs a GPU; use --device cuda")),
        r"\(acme-lungtk 9.9\): needs a GPU; use --device cuda",
    ),
    (lambda self, ct: [Candidate(_centre(ct), 8.0, 2.0)], r"ValueError: probability must be in \[0, 1\]"),
    (lambda self, ct: [Candidate(_centre(ct), 8.0, float("nan"))], r"ValueError: probability must be in"),
    (lambda self, ct: [Candidate((0.0, "x", 0.0), 8.0, 0.5)], r"ValueError: center_xyz must be a number"),
    (_exit, r"failed in detect\(\): it called sys.exit\(3\)"),
]


@pytest.mark.parametrize(("bad", "message"), DETECTOR_FAULTS)
def test_a_detector_fault_fails_its_scan_only_and_names_the_distribution(tmp_path, bad, message):
    pipe = _pipeline("detector", "detect", _bad(_good_detect, bad))
    summary = run(pipe, _scans(tmp_path), tmp_path / "out")
    failed = _assert_only_bad_scan_failed(summary, tmp_path / "out", "detector", message)
    assert failed["failure"]["stage"] == "detect"


def _good_segment(self, ct, candidates):
    return StubSegmenter.segment(self, ct, candidates)


def _masks(make):
    """A segment() whose masks come from make(ct, candidate)."""
    return lambda self, ct, candidates: [make(ct, c) for c in candidates]


def _near(ct, c, shape=(5, 5, 5)):
    return ct.geometry.shifted(ct.geometry.xyz2irc(c.center_xyz) - np.array(shape) // 2)


SEGMENTER_FAULTS = [
    (lambda self, ct, cs: None, r"returned None instead of a list of NoduleMask"),
    (lambda self, ct, cs: [], r"returned 0 result\(s\) for 1 input\(s\)"),
    (lambda self, ct, cs: [None, None], r"returned 2 result\(s\) for 1 input\(s\)"),
    (_masks(lambda ct, c: np.ones((5, 5, 5), bool)), r"returned a ndarray for candidate 1 of its batch"),
    (
        _masks(lambda ct, c: NoduleMask(np.ones((5, 5, 5), bool), ct.geometry.shifted((0, 5e4 / 0.8, 0)))),
        r"voxels lie outside the scan",
    ),
    (
        _masks(
            lambda ct, c: NoduleMask(np.ones((5, 5, 5), bool), Geometry((9e4, 9e4, 9e4), ct.geometry.spacing))
        ),
        r"outside the scan",
    ),
    (
        _masks(
            lambda ct, c: NoduleMask(np.ones((5, 5, 5), bool), _near(ct, c).with_spacing((1.0, 1.0, 1.0)))
        ),
        r"spacing \(1, 1, 1\) mm, not on the scan's grid",
    ),
    (
        _masks(lambda ct, c: NoduleMask(np.full((5, 5, 5), np.nan), _near(ct, c))),
        r"ValueError: a nodule mask must hold booleans or 0/1",
    ),
    (
        _masks(lambda ct, c: NoduleMask(np.full((5, 5, 5), 0.7), _near(ct, c))),
        r"ValueError: a nodule mask must hold booleans or 0/1",
    ),
    (_masks(lambda ct, c: NoduleMask(np.ones((5, 5), bool), _near(ct, c, (1, 5, 5)))), r"must be 3D"),
    (
        _masks(lambda ct, c: NoduleMask(np.ones((5, 5, 5), bool), _near(ct, c), texture={"rocky": 1.0})),
        r"texture label 'rocky'",
    ),
    (_raise(ValueError("cannot crop")), r"failed in segment\(\): ValueError: cannot crop"),
]


@pytest.mark.parametrize(("bad", "message"), SEGMENTER_FAULTS)
def test_a_segmenter_fault_fails_its_scan_only_and_names_the_distribution(tmp_path, bad, message):
    pipe = _pipeline("segmenter", "segment", _bad(_good_segment, bad))
    summary = run(pipe, _scans(tmp_path), tmp_path / "out")
    failed = _assert_only_bad_scan_failed(summary, tmp_path / "out", "segmenter", message)
    assert failed["failure"]["stage"] == "segment"


def _good_classify(self, ct, findings):
    return StubClassifier.classify(self, ct, findings)


def _labels(value):
    return lambda self, ct, findings: [value for _ in findings]


CLASSIFIER_FAULTS = [
    (_labels({"malignancy": {"benign": 0.5, "malignant": float("nan")}}), r"malignancy.malignant = nan"),
    (_labels({"malignancy": {"benign": 0.0, "malignant": 1.5}}), r"malignancy.malignant = 1.5 for finding 1"),
    (_labels({"malignancy": {"malignant": -0.1}}), r"malignant = -0.1"),
    (_labels({"malignancy": {"malignant": float("inf")}}), r"malignant = inf"),
    (_labels({"malignancy": {"malignant": "0.4"}}), r"malignant = '0.4'"),
    (_labels({"malignancy": {"malignant": None}}), r"malignant = None"),
    (_labels({"malignancy": {"benign": 0.8, "malignant": 0.8}}), r"summing to 1.6"),
    (_labels({"texture": {"rocky": 1.0}}), r"texture label 'rocky'"),
    (_labels({"malignancy": 0.7}), r"a float for task 'malignancy' for finding 1"),
    (_labels({"": {"x": 0.5}}), r"a task name '' for finding 1"),
    (_labels({3: {"x": 0.5}}), r"a task name 3"),
    (_labels(None), r"returned None for finding 1"),
    (_labels([0.5]), r"returned a list for finding 1"),
    (lambda self, ct, findings: None, r"returned None instead of a list"),
    (lambda self, ct, findings: [], r"returned 0 result\(s\) for 1 input\(s\)"),
    (_raise(ZeroDivisionError("division by zero")), r"failed in classify\(\): ZeroDivisionError"),
]


@pytest.mark.parametrize(("bad", "message"), CLASSIFIER_FAULTS)
def test_a_classifier_fault_fails_its_scan_only_and_names_the_distribution(tmp_path, bad, message):
    pipe = _pipeline("classifier", "classify", _bad(_good_classify, bad))
    summary = run(pipe, _scans(tmp_path), tmp_path / "out")
    failed = _assert_only_bad_scan_failed(summary, tmp_path / "out", "classifier", message)
    assert failed["failure"]["stage"] == "classify"


def test_numpy_numbers_from_a_component_reach_strict_json(tmp_path):
    """float32 probabilities and a generator of candidates are fine: they are plain floats in the outputs."""

    def detect(self, ct):
        yield Candidate(tuple(np.float32(v) for v in _centre(ct)), np.float64(8.0), np.float32(0.75))

    def classify(self, ct, findings):
        return [{"malignancy": {"benign": np.float32(0.5), "malignant": np.float64(0.5)}} for _ in findings]

    registry = _registry_with("classifier", "classify", classify)
    registry.add(ComponentSpec("gen-det", "detector", type("GenDet", (StubDetector,), {"detect": detect})))
    pipe = Pipeline.from_registry(registry, "gen-det", "stub-seg", ["bad-classifier"], device="cpu")
    summary = run(pipe, _scans(tmp_path, 1), tmp_path / "out")
    assert not summary.failed
    (row,) = _strict_json(tmp_path / "out" / "findings.json")["findings"]
    assert row["probability"] == 0.75 and row["malignancy"] == 0.5


def test_a_segmenter_may_give_no_mask(tmp_path):
    pipe = _pipeline("segmenter", "segment", lambda self, ct, cs: [None for _ in cs])
    summary = run(pipe, _scans(tmp_path, 1), tmp_path / "out")
    assert not summary.failed
    (row,) = summary.findings
    assert row["volume_mm3"] is None and row["diameter_mm"] == 8.0


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda options: None, r"its factory returned None, which has no detect\(\) method"),
        (lambda options: object(), r"its factory returned an object, which has no detect\(\) method"),
        (lambda options: 1 / 0, r"cannot be built: its factory failed: ZeroDivisionError"),
        (lambda options: sys.exit(2), r"cannot be built: its factory failed: it called sys.exit\(2\)"),
    ],
)
def test_a_factory_that_fails_names_the_component_and_distribution(factory, message):
    registry = Registry()
    registry.add(ComponentSpec("bad", "detector", factory, distribution=DIST, version="9.9"))
    registry.add(ComponentSpec("stub-seg", "segmenter", StubSegmenter))
    with pytest.raises(LungtkError, match=message) as info:
        Pipeline.from_registry(registry, "bad", "stub-seg", [], device="cpu")
    assert f"detector 'bad' ({DIST} 9.9)" in str(info.value)


def test_an_unreadable_scan_fails_alone_and_says_why(tmp_path):
    scans = _scans(tmp_path)
    (tmp_path / "s1.raw").write_bytes(b"\0" * 10)  # the header now claims more voxels than the file has
    pipe = Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), "stub-det", "stub-seg", []
    )
    summary = run(pipe, scans, tmp_path / "out")
    (failed,) = summary.failed
    assert failed["seriesuid"] == "s1" and failed["failure"]["stage"] == "read"
    assert "s1" in failed["error"] and "\n" not in failed["error"]
    assert len(summary.findings) == 2


def test_a_reader_bug_fails_the_scan_not_the_run(tmp_path, monkeypatch):
    import lungtk.ct_io

    real = lungtk.ct_io.read_ct

    def read_ct(path):
        if Path(path).name == "s1.mhd":
            raise ValueError("cannot convert float NaN to integer")
        return real(path)

    monkeypatch.setattr(lungtk.ct_io, "read_ct", read_ct)
    pipe = Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), "stub-det", "stub-seg", []
    )
    summary = run(pipe, _scans(tmp_path), tmp_path / "out")
    (failed,) = summary.failed
    assert re.search(r"cannot be read: lungtk-ct-io \S+ raised ValueError: cannot convert", failed["error"])
    assert failed["failure"]["distribution"] == "lungtk-ct-io" and "traceback" in failed


def test_a_bug_in_a_later_stage_fails_the_scan_with_its_stage(tmp_path, monkeypatch):
    from lungtk.pipeline import engine

    real = engine.measure

    def measure(ct, mask):
        if ct.series_uid == BAD_SCAN:
            raise IndexError("index 9 is out of bounds")
        return real(ct, mask)

    monkeypatch.setattr(engine, "measure", measure)
    pipe = Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), "stub-det", "stub-seg", []
    )
    summary = run(pipe, _scans(tmp_path), tmp_path / "out")
    (failed,) = summary.failed
    assert failed["failure"]["stage"] == "classify"  # rows are measured in the classify stage
    assert (
        "IndexError: index 9 is out of bounds" in failed["error"]
        and "bug in lungtk-pipeline" in failed["error"]
    )
    assert len(summary.findings) == 2


def test_given_locations_outside_the_scan_name_the_table(tmp_path):
    scan = _scan(tmp_path, "s0")
    table = tmp_path / "clicks.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\ns0,100000,0,0\n")  # mm, far outside
    pipe = Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), GivenCandidates.read(table), "stub-seg", []
    )
    summary = run(pipe, expand_scans([scan]), tmp_path / "out")
    (failed,) = summary.failed
    assert (
        f"the candidates table {table} gives candidate 1 at (100000, 0, 0) mm, outside the scan"
        in failed["error"]
    )


@pytest.mark.parametrize("uid", ["a/b", "", "..", "tab\there", "x" * 300])
def test_a_uid_that_cannot_name_a_file_fails_its_scan(tmp_path, uid):
    scan = _scan(tmp_path, "s0")
    pipe = Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), "stub-det", "stub-seg", []
    )
    summary = run(pipe, [(uid, scan), ("ok", scan)], tmp_path / "out")
    assert [s["seriesuid"] for s in summary.failed] == [uid]
    assert "cannot name a file" in summary.failed[0]["error"]
    assert not (tmp_path / "a").exists()


# -- --resume -------------------------------------------------------------------------------------------


def _resume_pipeline() -> Pipeline:
    return Pipeline.from_registry(
        _registry_with("detector", "detect", _good_detect), "stub-det", "stub-seg", []
    )


def _rewrite(path: Path, hu_change: int, *, keep_time: bool) -> None:
    """Write the scan again with changed voxels (same shape, so the same file sizes)."""
    from lungtk.ct_io import read_ct

    ct = read_ct(path)
    raw = path.with_suffix(".raw")
    times = [(p, p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (path, raw)]
    write_image(path, np.asarray(ct.array) + np.int16(hu_change), ct.geometry)
    if keep_time:
        for p, atime, mtime in times:
            os.utime(p, ns=(atime, mtime))


@pytest.mark.parametrize(
    "change",
    ["voxels", "voxels-same-times", "touch-raw", "header-origin", "raw-only", "record-nan", "mask-gone"],
)
def test_resume_analyses_a_changed_scan_again(tmp_path, change):
    scans = _scans(tmp_path, 2)
    out = tmp_path / "out"
    first = run(_resume_pipeline(), scans, out)
    assert first.resumed == 0
    s0 = tmp_path / "s0.mhd"
    if change == "voxels":
        _rewrite(s0, 500, keep_time=False)
    elif change == "voxels-same-times":
        _rewrite(s0, 500, keep_time=True)
    elif change == "touch-raw":
        os.utime(s0.with_suffix(".raw"), ns=(1, 1))
    elif change == "header-origin":
        text = s0.read_text()
        s0.write_text(text.replace("Offset = -20", "Offset = -21"))
        assert s0.read_text() != text
    elif change == "raw-only":
        raw = s0.with_suffix(".raw")
        stat = raw.stat()
        data = bytearray(raw.read_bytes())
        data[len(data) // 2] ^= 0xFF
        raw.write_bytes(bytes(data))
        os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "record-nan":
        record = out / "scans" / "s0.json"
        record.write_text(record.read_text().replace('"probability": 0.9', '"probability": NaN'))
    elif change == "mask-gone":
        (out / "masks" / "s0.nii.gz").unlink()
    second = run(_resume_pipeline(), scans, out, resume=True)
    assert second.resumed == 1  # s1 only
    _strict_json(out / "findings.json")


def test_resume_reuses_an_unchanged_scan_even_when_moved(tmp_path):
    scans = _scans(tmp_path, 2)
    out = tmp_path / "out"
    run(_resume_pipeline(), scans, out)
    before = (out / "findings.csv").read_text()
    again = run(_resume_pipeline(), scans, out, resume=True)
    assert again.resumed == 2 and (out / "findings.csv").read_text() == before


def test_source_identity_samples_large_files_and_follows_headers(tmp_path):
    big = tmp_path / "big.nii"
    data = bytearray(os.urandom(9 << 20))
    big.write_bytes(bytes(data))
    key = source_identity(big)
    stat = big.stat()
    data[-10] ^= 0xFF  # in the last MiB
    big.write_bytes(bytes(data))
    os.utime(big, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source_identity(big) != key
    header = tmp_path / "h.mhd"
    header.write_text("NDims = 3\nElementDataFile = data.raw\n")
    (tmp_path / "data.raw").write_bytes(b"12345678")
    key = source_identity(header)
    assert [f["file"] for f in key["files"]] == ["h.mhd", "data.raw"]
    (tmp_path / "data.raw").write_bytes(b"12345679")
    assert source_identity(header) != key
    detached = tmp_path / "n.nhdr"
    detached.write_text("NRRD0004\ndata file: data.raw\n")
    assert [f["file"] for f in source_identity(detached)["files"]] == ["n.nhdr", "data.raw"]


def test_source_identity_of_a_dicom_folder_sees_a_new_or_changed_slice(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.dcm").write_bytes(bytes([i]) * 100)
    key = source_identity(folder)
    assert key == source_identity(folder)
    (folder / "3.dcm").write_bytes(b"x")
    assert source_identity(folder) != key
    key = source_identity(folder)
    (folder / "0.dcm").write_bytes(bytes([9]) * 101)
    assert source_identity(folder) != key


# -- scan lists -----------------------------------------------------------------------------------------


def test_a_list_that_names_itself_is_one_clear_error(tmp_path):
    scan = _scan(tmp_path, "s0")
    listing = tmp_path / "scans.txt"
    listing.write_text(f"{scan.name}\n# a comment\nscans.txt\n")
    with pytest.raises(LungtkError, match=r"scans.txt: line 3 names the list itself"):
        expand_scans([listing])


@pytest.mark.parametrize("depth", [2, 3])
def test_a_cycle_of_lists_is_one_clear_error(tmp_path, depth):
    names = [f"l{i}.list" for i in range(depth)]
    for i, name in enumerate(names):
        (tmp_path / name).write_text(f"{names[(i + 1) % depth]}\n")
    with pytest.raises(LungtkError, match=r"the scan lists form a cycle \(l0.list -> .* -> l0.list\)"):
        expand_scans([tmp_path / names[0]])


def test_a_list_reached_through_a_link_or_another_spelling_is_the_same_list(tmp_path):
    (tmp_path / "sub").mkdir()
    listing = tmp_path / "a.txt"
    listing.write_text("sub/../a.txt\n")
    with pytest.raises(LungtkError, match="names the list itself"):
        expand_scans([listing])
    (tmp_path / "link.txt").symlink_to(listing)
    listing.write_text("link.txt\n")
    with pytest.raises(LungtkError, match="names the list itself"):
        expand_scans([listing])


def test_two_lists_may_name_the_same_list(tmp_path):
    scan = _scan(tmp_path, "s0")
    (tmp_path / "common.txt").write_text(f"{scan.name}\n")
    (tmp_path / "a.txt").write_text("common.txt\n")
    (tmp_path / "b.txt").write_text("common.txt\n")
    (tmp_path / "all.txt").write_text("a.txt\nb.txt\n")
    assert expand_scans([tmp_path / "all.txt"]) == [("s0", scan)]


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"s0.mhd\x00\n"])
def test_a_list_that_is_not_text_is_one_clear_error(tmp_path, content):
    listing = tmp_path / "scans.txt"
    listing.write_bytes(content)
    with pytest.raises(LungtkError, match=r"scans.txt"):
        expand_scans([listing])


# -- outputs ---------------------------------------------------------------------------------------------


def test_thumbnail_links_are_percent_encoded(tmp_path):
    scan = _scan(tmp_path, "scan#1 ?")
    summary = run(_resume_pipeline(), expand_scans([scan]), tmp_path / "out")
    assert not summary.failed
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    links = re.findall(r"<img src='([^']+)'", page)
    assert links and all(link.startswith("thumbnails/scan%231%20%3F/") for link in links)
    from urllib.parse import unquote

    assert all((tmp_path / "out" / unquote(link)).is_file() for link in links)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_disk_or_read_only_folder_names_the_output_not_a_temporary_file(tmp_path, monkeypatch, code):
    scans = _scans(tmp_path, 1)
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name.startswith(".findings.csv."):
            raise OSError(code, os.strerror(code))  # as a full disk's write() says it: no file name
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OutputError) as info:
        run(_resume_pipeline(), scans, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'out' / 'findings.csv'}: cannot write ({os.strerror(code)})")
    assert ".tmp" not in message and "--resume" in message
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".findings.csv.")]


def test_a_full_disk_while_writing_a_mask_stops_the_run_naming_the_mask(tmp_path, monkeypatch):
    scans = _scans(tmp_path, 2)
    real = Path.write_bytes

    def write_bytes(self, data):
        if ".nii.gz" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(OutputError, match=r"masks/s0.nii.gz: cannot write\b.*--resume"):
        run(_resume_pipeline(), scans, tmp_path / "out")


def test_resume_analyses_again_when_a_setting_weights_or_given_location_changed(tmp_path):
    scans = _scans(tmp_path, 2)
    out = tmp_path / "out"
    registry = _registry_with("detector", "detect", _good_detect)

    def pipe(**kwargs):
        return Pipeline.from_registry(registry, "stub-det", "stub-seg", ["stub-cls"], device="cpu", **kwargs)

    run(pipe(), scans, out)
    assert run(pipe(), scans, out, resume=True).resumed == 2
    assert run(pipe(settings={"stub-cls": {"malignant": "0.5"}}), scans, out, resume=True).resumed == 0
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"1")
    assert run(pipe(weights={"stub-det": weights}), scans, out, resume=True).resumed == 0
    assert run(pipe(weights={"stub-det": weights}), scans, out, resume=True).resumed == 2
    weights.write_bytes(b"2")
    assert run(pipe(weights={"stub-det": weights}), scans, out, resume=True).resumed == 0

    table = tmp_path / "given.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\ns0,-4,26,-82\ns1,-4,26,-82\n")

    def given():
        return Pipeline.from_registry(registry, GivenCandidates.read(table), "stub-seg", [], device="cpu")

    run(given(), scans, out)
    assert run(given(), scans, out, resume=True).resumed == 2
    table.write_text("seriesuid,coordX,coordY,coordZ\ns0,-4,26,-82\ns1,-5,26,-82\n")
    assert run(given(), scans, out, resume=True).resumed == 1  # s0's locations are the same
