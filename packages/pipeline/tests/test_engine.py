"""The pipeline library in process, with stub components: the component contract (one RunOptions per
factory, declared settings, weights), given locations as the detector, outputs and truth matching."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from lungtk.core import Candidate, ComponentSpec, Geometry, LungtkError, NoduleMask, Registry
from lungtk.ct_io import write_image
from lungtk.pipeline import GivenCandidates, Pipeline, expand_scans, run
from lungtk.pipeline.truth import match_truth

SPACING = (0.8, 0.8, 1.5)  # x, y, z
ORIGIN = (-20.0, 10.0, -100.0)


def _scan(folder: Path, name: str = "scan-a") -> Path:
    """A 24x40x40 volume of lung (-850 HU) with a 5-voxel-radius ball of soft tissue at its centre."""
    grid = np.indices((24, 40, 40)).astype(float)
    centre = np.array([12, 20, 20.0])[:, None, None, None]
    mm = (grid - centre) * np.array([1.5, 0.8, 0.8])[:, None, None, None]
    ball = np.sqrt((mm**2).sum(axis=0)) <= 4.0
    hu = np.where(ball, 40, -850).astype(np.int16)
    path = folder / f"{name}.mhd"
    write_image(path, hu, Geometry(ORIGIN, SPACING))
    return path


class StubDetector:
    """One candidate at the scan's centre voxel; remembers the options it was built with."""

    built: ClassVar[list] = []

    def __init__(self, options):
        self.options = options
        StubDetector.built.append(options)

    def detect(self, ct):
        centre = ct.geometry.irc2xyz(np.array(ct.array.shape) // 2)
        return [Candidate(tuple(centre), float(self.options.settings["diameter_mm"]), 0.9)]


class StubSegmenter:
    """A ball of the candidate's diameter; records the centres it was asked about."""

    seen: ClassVar[list] = []

    def __init__(self, options):
        self.options = options

    def segment(self, ct, candidates):
        masks = []
        for c in candidates:
            StubSegmenter.seen.append(c.center_xyz)
            size = 9
            geometry = ct.geometry.shifted(ct.geometry.xyz2irc(c.center_xyz) - size // 2)
            grid = np.indices((size,) * 3) - size // 2
            mm = grid * ct.geometry.spacing_irc[:, None, None, None]
            masks.append(NoduleMask(np.sqrt((mm**2).sum(0)) <= c.diameter_mm / 2, geometry))
        return masks


class StubClassifier:
    def __init__(self, options):
        self.options = options

    def classify(self, ct, findings):
        p = float(self.options.settings["malignant"])
        return [{"malignancy": {"benign": 1 - p, "malignant": p}} for _ in findings]


def _registry(**extra) -> Registry:
    registry = Registry()
    registry.add(ComponentSpec("stub-det", "detector", StubDetector, settings={"diameter_mm": 8.0}, **extra))
    registry.add(ComponentSpec("stub-seg", "segmenter", StubSegmenter, cpu_only=True))
    registry.add(ComponentSpec("stub-cls", "classifier", StubClassifier, settings={"malignant": 0.25}))
    return registry


def test_every_factory_gets_run_options_with_its_own_settings(tmp_path):
    StubDetector.built.clear()
    pipe = Pipeline.from_registry(
        _registry(),
        "stub-det",
        "stub-seg",
        ["stub-cls"],
        device="cpu",
        batch_size=3,
        settings={"detector": {"diameter_mm": "6.5"}, "stub-cls": {"malignant": "0.75"}},
    )
    (options,) = StubDetector.built
    assert options.settings == {"diameter_mm": 6.5} and options.batch_size == 3 and options.device == "cpu"
    assert pipe.classifiers[0].instance.options.settings == {"malignant": 0.75}
    assert pipe.segmenter.instance.options.settings == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"stub-det": {"diameter": "3"}}, "has no setting 'diameter'; did you mean 'diameter_mm'"),
        ({"stub-dett": {"diameter_mm": "3"}}, "--set stub-dett: not a component of this pipeline"),
        ({"stub-cls": {"malignant": "high"}}, "expected a number"),
    ],
)
def test_bad_settings_fail_before_anything_is_built(settings, message):
    StubDetector.built.clear()
    with pytest.raises(LungtkError, match=message):
        Pipeline.from_registry(_registry(), "stub-det", "stub-seg", ["stub-cls"], settings=settings)
    assert StubDetector.built == []


def test_weights_override_reaches_only_the_named_component(tmp_path):
    model = tmp_path / "det.safetensors"
    model.write_bytes(b"not read by the stub")
    pipe = Pipeline.from_registry(
        _registry(), "stub-det", "stub-seg", ["stub-cls"], device="cpu", weights={"stub-det": model}
    )
    assert pipe.detector.instance.options.weights == model
    assert pipe.segmenter.instance.options.weights is None


def test_a_component_with_missing_shipped_weights_names_the_override():
    registry = Registry()
    registry.add(
        ComponentSpec(
            "learned", "detector", StubDetector, default_weights="lungtk.pipeline:weights/none.safetensors"
        )
    )
    registry.add(ComponentSpec("stub-seg", "segmenter", StubSegmenter))
    with pytest.raises(LungtkError, match=r"--weights learned=FILE"):
        Pipeline.from_registry(registry, "learned", "stub-seg", [])


def test_run_writes_findings_masks_and_a_recommendation(tmp_path):
    scan = _scan(tmp_path)
    pipe = Pipeline.from_registry(_registry(), "stub-det", "stub-seg", ["stub-cls"], device="cpu")
    summary = run(pipe, expand_scans([scan]), tmp_path / "out")
    (row,) = summary.findings
    assert row["malignancy"] == 0.25 and row["probability"] == 0.9
    # A ball of 8 mm at 0.8 x 0.8 x 1.5 mm voxels: the measured diameter is within a voxel of 8 mm.
    assert abs(row["diameter_mm"] - 8.0) < 1.0
    with (tmp_path / "out" / "findings.csv").open() as handle:
        assert [r["seriesuid"] for r in csv.DictReader(handle)] == ["scan-a"]
    record = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert record["components"]["detector"]["name"] == "stub-det"
    assert (tmp_path / "out" / "masks" / "scan-a.nii.gz").is_file()


class TexturedSegmenter(StubSegmenter):
    """The stub's ball with texture probabilities, as a segmenter with a texture head gives them."""

    def segment(self, ct, candidates):
        texture = {"ground-glass": 0.7, "part-solid": 0.2, "solid": 0.1}
        return [replace(m, texture=texture) for m in super().segment(ct, candidates)]


class TextureClassifier:
    def __init__(self, options):
        self.options = options

    def classify(self, ct, findings):
        return [{"texture": {"ground-glass": 0.0, "part-solid": 0.9, "solid": 0.1}} for _ in findings]


@pytest.mark.parametrize(
    ("classifiers", "texture"), [(["stub-cls"], "ground-glass"), (["stub-cls", "texture-cls"], "part-solid")]
)
def test_a_segmenters_texture_reaches_the_findings_unless_a_classifier_gives_one(
    tmp_path, classifiers, texture
):
    registry = _registry()
    registry.add(ComponentSpec("textured-seg", "segmenter", TexturedSegmenter, cpu_only=True))
    registry.add(ComponentSpec("texture-cls", "classifier", TextureClassifier))
    pipe = Pipeline.from_registry(registry, "stub-det", "textured-seg", classifiers, device="cpu")
    summary = run(pipe, expand_scans([_scan(tmp_path)]), tmp_path / "out")
    (row,) = summary.findings
    assert row["texture"] == texture and row["texture_assumed"] is False
    (plain,) = run(
        Pipeline.from_registry(registry, "stub-det", "stub-seg", ["stub-cls"], device="cpu"),
        expand_scans([_scan(tmp_path)]),
        tmp_path / "plain",
    ).findings
    assert plain["texture"] == "solid" and plain["texture_assumed"] is True  # nobody gave one


def test_given_locations_replace_the_detector(tmp_path):
    scan = _scan(tmp_path)
    table = tmp_path / "clicks.csv"
    table.write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        "scan-a,-4.0,26.0,-82.0,6\n"
        "scan-a,-10.0,20.0,-90.0,\n"
        "other-scan,0,0,0,5\n"
    )
    StubSegmenter.seen.clear()
    given = GivenCandidates.read(table)
    pipe = Pipeline.from_registry(_registry(), given, "stub-seg", [], device="cpu")
    summary = run(pipe, expand_scans([scan]), tmp_path / "out")
    assert StubSegmenter.seen == [(-4.0, 26.0, -82.0), (-10.0, 20.0, -90.0)]
    assert [r["probability"] for r in summary.findings] == [1.0, 1.0]
    assert pipe.describe()["detector"]["distribution"] == "lungtk-pipeline"


class StubNoduleClassifier:
    """Nodule-ness 0.3 for every finding (a false-positive reducer)."""

    def __init__(self, options):
        self.options = options

    def classify(self, ct, findings):
        return [{"nodule": {"non-nodule": 0.7, "nodule": 0.3}} for _ in findings]


@pytest.mark.parametrize(
    ("detector", "expected"),
    [("stub-det", (0.9 + 0.3) / 2), ("scored", (0.6 + 0.3) / 2), ("clicks", 0.3), ("blank", 0.3)],
)
def test_a_nodule_classifier_is_averaged_with_the_detectors_score(tmp_path, detector, expected):
    scan = _scan(tmp_path)
    registry = _registry()
    registry.add(ComponentSpec("stub-fpr", "classifier", StubNoduleClassifier))
    if detector != "stub-det":  # a table with probabilities, or clicks without: then the classifier's alone
        table = tmp_path / "given.csv"
        column, cell = {"scored": (",probability", ",0.6"), "blank": (",probability", ",")}.get(
            detector, ("", "")
        )  # blank: a probability column left empty gives no probability either
        table.write_text(f"seriesuid,coordX,coordY,coordZ{column}\nscan-a,-4.0,26.0,-82.0{cell}\n")
        detector = GivenCandidates.read(table)
    pipe = Pipeline.from_registry(registry, detector, "stub-seg", ["stub-fpr"], device="cpu")
    (row,) = run(pipe, expand_scans([scan]), tmp_path / "out").findings
    assert row["probability"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("scan-a,1,2,inf,5", "'coordZ': '?inf'? is not a finite number"),
        ("scan-a,1,2,x,5", "'coordZ': 'x' is not a number"),
        ("scan-a,1,2,3,-5", "'diameter_mm': '-5' is out of range"),
        ("scan-a,1,2,3,nan", "'diameter_mm': 'nan' is not a finite number"),
        ("scan-a,1,2,3,1e9", "'diameter_mm': '1e9' is out of range"),
        ("scan-a,1e9,2,3,4", "'coordX': '1e9' is out of range"),
        (",1,2,3,4", "'seriesuid': is empty"),
    ],
)
def test_given_locations_are_validated_with_file_and_line(tmp_path, row, message):
    table = tmp_path / "clicks.csv"
    # blank lines above the bad row: the message names the row's line in the file, not its position
    table.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n\nscan-a,0,0,0,4\n\n{row}\n")
    with pytest.raises(LungtkError, match=rf"clicks.csv: line 5, column {message}"):
        GivenCandidates.read(table)


def test_given_probability_must_be_a_probability(tmp_path):
    table = tmp_path / "clicks.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ,probability\nscan-a,0,0,0,2.0\n")
    with pytest.raises(LungtkError, match="'probability': '2.0' is not a probability"):
        GivenCandidates.read(table)


def test_truth_matching_uses_the_radius_rule(tmp_path):
    truth = tmp_path / "nodules.csv"
    truth.write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm,texture\n"
        "a,0,0,0,10,solid\n"  # hit by finding 2 at 4.9 mm (radius 5); finding 1 is 5.1 mm away
        "a,50,0,0,6,ground-glass\n"  # only a finding below the threshold is near it
        "b,0,0,0,10,solid\n"  # another scan
    )
    findings = [
        {"finding": 1, "coordX": 0.0, "coordY": 5.1, "coordZ": 0.0, "probability": 0.9},
        {"finding": 2, "coordX": 3.0, "coordY": 0.0, "coordZ": 3.874, "probability": 0.6},
        {"finding": 3, "coordX": 50.0, "coordY": 0.0, "coordZ": 0.0, "probability": 0.4},
    ]
    matches = match_truth(truth, findings, 0.5, seriesuid="a")
    assert [(m.diameter_mm, m.finding) for m in matches] == [(10.0, 2), (6.0, None)]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("a,nan,0,0,10", "'coordX': 'nan' is not a finite number"),
        ("a,0,0,0,-3", "'diameter_mm': '-3' is out of range"),
        ("a,0,0,0,inf", "'diameter_mm': 'inf' is not a finite number"),
    ],
)
def test_truth_rows_are_checked_and_named_by_their_file_line(tmp_path, cells, message):
    truth = tmp_path / "nodules.csv"
    truth.write_text(f"seriesuid,coordX,coordY,coordZ,diameter_mm\n\na,0,0,0,10\n\n\n{cells}\n")
    with pytest.raises(LungtkError, match=rf"nodules.csv: line 6, column {message}"):
        match_truth(truth, [], 0.5)


def test_the_library_runs_without_typer_or_torch(tmp_path):
    scan = _scan(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from lungtk.core import Candidate, ComponentSpec, NoduleMask, Registry
        from lungtk.pipeline import Pipeline, expand_scans, run
        import numpy as np

        class Det:
            def __init__(self, options): pass
            def detect(self, ct):
                return [Candidate(tuple(ct.geometry.irc2xyz(np.array(ct.array.shape) // 2)), 6.0, 0.8)]

        class Seg:
            def __init__(self, options): pass
            def segment(self, ct, candidates):
                return [NoduleMask(np.ones((3, 3, 3), bool), ct.geometry.shifted(
                    ct.geometry.xyz2irc(c.center_xyz) - 1)) for c in candidates]

        registry = Registry()
        registry.add(ComponentSpec("d", "detector", Det))
        registry.add(ComponentSpec("s", "segmenter", Seg))
        pipe = Pipeline.from_registry(registry, "d", "s", [], device="cpu")
        summary = run(pipe, expand_scans([Path({str(scan)!r})]), Path({str(tmp_path / "out")!r}))
        assert len(summary.findings) == 1, summary.findings
        print(sorted(m for m in ("torch", "typer") if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_given_locations_must_name_a_scan_of_the_run(tmp_path):
    table = tmp_path / "clicks.csv"
    table.write_text("seriesuid,coordX,coordY,coordZ\na,0,0,0\nb,1,1,1\n")
    given = GivenCandidates.read(table)
    assert given.check_covers(["a", "c"]) == ["b"]
    with pytest.raises(LungtkError, match=r"clicks.csv: names none of the 2 scan\(s\) of this run"):
        given.check_covers(["c", "d"])


def test_output_advice_names_only_options_the_command_has(tmp_path):
    from lungtk.pipeline.run import check_writable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LungtkError) as err:
        check_writable(blocker)
    assert err.value.for_command({"--out", "--resume"}).endswith(
        "is a file, not a folder; choose another --out"
    )
    assert err.value.for_command({"--seed"}).endswith("is a file, not a folder; choose another folder")


def test_a_list_file_may_start_with_a_byte_order_mark(tmp_path):
    scan = tmp_path / "1.2.mhd"
    write_image(scan, np.zeros((4, 5, 6), np.int16), Geometry(np.zeros(3), np.ones(3), np.eye(3)))
    listing = tmp_path / "scans.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{scan}\r\n".encode())
    assert expand_scans([listing]) == [("1.2", scan)]


def test_scan_identity_follows_a_data_file_named_with_a_percent_sign(tmp_path):
    from lungtk.pipeline.identity import source_identity

    raw = tmp_path / "a%b.raw"
    raw.write_bytes(b"\0" * 8)
    header = tmp_path / "a%b.mhd"
    header.write_text("NDims = 3\nElementDataFile = a%b.raw\n")
    files = [f["file"] for f in source_identity(header)["files"]]
    assert files == ["a%b.mhd", "a%b.raw"]


def test_the_next_scan_is_read_while_this_one_is_analysed(tmp_path, monkeypatch):
    import importlib
    import threading

    run_module = importlib.import_module("lungtk.pipeline.run")  # the package's `run` is the function

    scans = expand_scans([_scan(tmp_path, "scan-a"), _scan(tmp_path, "scan-b")])
    read = run_module._read
    second_read = threading.Event()
    overlapped = []

    def reading(path):
        if Path(path).stem == "scan-b":
            second_read.set()
        return read(path)

    class WaitingDetector(StubDetector):
        def detect(self, ct):  # while scan-a is analysed, scan-b is read in the background
            if ct.series_uid == "scan-a":
                overlapped.append(second_read.wait(timeout=10))
            return super().detect(ct)

    monkeypatch.setattr(run_module, "_read", reading)
    registry = Registry()
    registry.add(ComponentSpec("wait-det", "detector", WaitingDetector, settings={"diameter_mm": 8.0}))
    registry.add(ComponentSpec("stub-seg", "segmenter", StubSegmenter, cpu_only=True))
    pipe = Pipeline.from_registry(registry, "wait-det", "stub-seg", [], device="cpu")
    summary = run(pipe, scans, tmp_path / "out", read_ahead=True)  # the default on CUDA only
    assert overlapped == [True]
    assert [r["seriesuid"] for r in summary.findings] == ["scan-a", "scan-b"]


def test_reading_ahead_leaves_the_warnings_filters_as_they_were(tmp_path):
    import warnings

    from lungtk.ct_io import read_ct

    scans = []
    for name in ("n1", "n2", "n3"):  # NIfTI: its reader silences nibabel for a while, in the reading thread
        path = tmp_path / f"{name}.nii.gz"
        ct = read_ct(_scan(tmp_path, name))
        write_image(path, np.asarray(ct.array), ct.geometry)
        scans.append((name, path))
    before = list(warnings.filters)
    pipe = Pipeline.from_registry(_registry(), "stub-det", "stub-seg", [], device="cpu")
    summary = run(pipe, scans, tmp_path / "out", read_ahead=True)
    assert not summary.failed and len(summary.findings) == 3
    assert warnings.filters == before
