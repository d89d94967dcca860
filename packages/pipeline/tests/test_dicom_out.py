"""DICOM in, DICOM out: a DICOM series run through the classical pipeline gets a DICOM SEG of its masks and
a TID 1500 SR of its findings, read back here with pydicom and highdicom (and the NIfTI mask with
SimpleITK): the SEG references the source series, study and frame of reference and equals the NIfTI mask
voxel for voxel; the SR's measurements are findings.csv's and point at the SEG's segments."""

from __future__ import annotations

import csv
import errno
import json
import shutil
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SegmentationStorage, generate_uid

from lungtk.core import Candidate, ComponentSpec, Geometry, Registry, get_registry
from lungtk.ct_io import write_image
from lungtk.pipeline import Pipeline, expand_scans, run
from lungtk.pipeline.run import OutputError

SLICES, ROWS, COLUMNS = 40, 60, 64  # rows != columns: a transposed mask cannot pass
SPACING = (0.7, 0.75, 1.25)  # x (along a row), y (down a column), z: all different
ORIGIN = (-22.4, -30.0, -60.0)
# (slice, y mm, x mm from the centre) and radius of each nodule, one in each lung
NODULES = (((20, 1.0, -10.0), 5.0), ((12, -3.0, 10.0), 3.6))


def _chest() -> np.ndarray:
    """HU (slice, row, col): air around a body of soft tissue holding two lungs with a nodule in each."""
    z, y, x = np.indices((SLICES, ROWS, COLUMNS)).astype(float)
    y_mm, x_mm = (y - ROWS / 2) * SPACING[1], (x - COLUMNS / 2) * SPACING[0]
    hu = np.full(z.shape, -1000.0)
    hu[(y_mm / 20) ** 2 + (x_mm / 21) ** 2 <= 1] = 40
    hu[((y_mm / 13) ** 2 + ((np.abs(x_mm) - 10) / 8) ** 2 <= 1) & (z > 2) & (z < SLICES - 3)] = -850
    for (k, cy, cx), radius in NODULES:
        hu[np.sqrt(((z - k) * SPACING[2]) ** 2 + (y_mm - cy) ** 2 + (x_mm - cx) ** 2) <= radius] = 30
    return hu.astype(np.int16)


def _write_series(folder: Path, *, drop: tuple[str, ...] = (), shift: dict[int, float] | None = None) -> dict:
    """The chest as a CT series of single-frame slices, as a scanner writes it: instance numbers from the
    head down (the reverse of the z order), file names in neither order. ``drop`` leaves attributes out;
    ``shift`` moves slices along z (mm)."""
    folder.mkdir(parents=True)
    hu = _chest()
    uids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid(), "sops": []}
    order = np.random.default_rng(7).permutation(SLICES)
    for k in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
            "Phantom^Chest",
            "LUNGTK-7",
            "",
            "O",
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID = uids["study"], uids["series"]
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = uids["frame"], ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250101", "090000", "1", "ACC7"
        ds.ReferringPhysicianName, ds.Modality, ds.Manufacturer = "", "CT", "test"
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 3, SLICES - k, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        z = ORIGIN[2] + k * SPACING[2] + (shift or {}).get(k, 0.0)
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [SPACING[1], SPACING[0]]  # row spacing (y), then column spacing (x)
        ds.SliceThickness, ds.KVP = SPACING[2], 120
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = hu[k].tobytes()
        for keyword in drop:
            delattr(ds, keyword)
        ds.save_as(folder / f"IM{order[k]:04d}.dcm", enforce_file_format=True)
        uids["sops"].append(ds.SOPInstanceUID)
    return uids


def _classical(threshold: float = 0.5) -> Pipeline:
    return Pipeline.from_registry(
        get_registry(), "blob", "regiongrow", ["size"], device="cpu", threshold=threshold
    )


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("dicom-in") / "chest"
    return folder, _write_series(folder)


@pytest.fixture(scope="module")
def done(series, tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    """One run over the series: OUT, the scan's record and its reported findings from findings.csv."""
    folder, _ = series
    out = tmp_path_factory.mktemp("dicom-out")
    summary = run(_classical(), expand_scans([folder]), out)
    assert not summary.failed, summary.failed
    (record,) = summary.scans
    with (out / "findings.csv").open() as handle:  # finding K: the scan's K-th row
        rows = [{**r, "finding": str(k)} for k, r in enumerate(csv.DictReader(handle), start=1)]
    reported = [r for r in rows if float(r["probability"]) >= 0.5]
    return out, record, reported


def test_each_nodule_is_found_and_reported(done):
    _, record, reported = done
    assert record["dicom"] == {"seg": "dicom/chest/seg.dcm", "sr": "dicom/chest/sr.dcm"}
    assert len(reported) == len(NODULES)  # else the checks below would prove little


def test_seg_references_the_source_series_and_equals_the_nifti_mask(series, done):
    _, uids = series
    out, _, reported = done
    seg = pydicom.dcmread(out / "dicom/chest/seg.dcm")
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == uids["study"] and seg.FrameOfReferenceUID == uids["frame"]
    assert seg.PatientID == "LUNGTK-7" and seg.SeriesInstanceUID != uids["series"]
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == uids["series"]
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} <= set(uids["sops"])
    finding_of = {s.SegmentNumber: int(s.SegmentLabel.removeprefix("nodule ")) for s in seg.SegmentSequence}
    assert sorted(finding_of.values()) == sorted(int(r["finding"]) for r in reported if r["volume_mm3"])
    for s in seg.SegmentSequence:
        assert s.SegmentLabel == f"nodule {finding_of[s.SegmentNumber]}"
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == codes.SCT.Nodule.value
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"  # morph. abnormal
        assert "regiongrow" in s.SegmentAlgorithmName

    # Rebuild the label volume from the SEG's frames with pydicom alone: each frame's segment and its
    # Image Position (Patient), placed on the NIfTI mask's grid by SimpleITK.
    nifti = sitk.ReadImage(str(out / "masks/chest.nii.gz"))
    expected = sitk.GetArrayFromImage(nifti)
    rebuilt = np.zeros_like(expected)
    shared = seg.SharedFunctionalGroupsSequence[0]
    frames = seg.pixel_array.reshape(-1, ROWS, COLUMNS)
    assert frames.shape[0] == seg.NumberOfFrames
    for frame, groups in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        identified = groups.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        position = [float(v) for v in groups.PlanePositionSequence[0].ImagePositionPatient]
        col, row, index = nifti.TransformPhysicalPointToIndex(position)
        assert (row, col) == (0, 0)
        rebuilt[index][frame > 0] = finding_of[identified[0].ReferencedSegmentNumber]
    assert expected.any()
    np.testing.assert_array_equal(rebuilt, expected)


def test_highdicom_reads_the_seg_slice_by_source_slice(series, done):
    folder, _ = series
    out, _, _ = done
    seg = hd.seg.segread(out / "dicom/chest/seg.dcm")
    slices = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # the NIfTI's slice order (z up)
    pixels = seg.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in slices], combine_segments=True, skip_overlap_checks=True
    )
    labels = np.zeros_like(pixels)
    for s in seg.SegmentSequence:
        labels[pixels == s.SegmentNumber] = int(s.SegmentLabel.removeprefix("nodule "))
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks/chest.nii.gz")))
    np.testing.assert_array_equal(labels, expected)


def test_sr_measurements_are_the_findings_and_point_at_the_seg(series, done):
    _, uids = series
    out, _, reported = done
    sr = hd.sr.srread(out / "dicom/chest/sr.dcm")
    seg = pydicom.dcmread(out / "dicom/chest/seg.dcm")
    assert sr.StudyInstanceUID == uids["study"] and sr.PatientID == "LUNGTK-7"
    evidence = {
        s.SeriesInstanceUID
        for e in sr.CurrentRequestedProcedureEvidenceSequence
        for s in e.ReferencedSeriesSequence
    }
    assert evidence == {uids["series"], seg.SeriesInstanceUID}
    (observer,) = sr.content.get_observer_contexts()
    assert observer.observer_type == codes.DCM.Device
    assert observer.observer_identifying_attributes.name == "lungtk"
    segments = {s.SegmentNumber: s for s in seg.SegmentSequence}
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert sorted(g.tracking_identifier for g in groups) == sorted(f"nodule {r['finding']}" for r in reported)
    by_finding = {r["finding"]: r for r in reported}
    for group in groups:
        row = by_finding[group.tracking_identifier.removeprefix("nodule ")]
        assert group.finding_type == codes.SCT.Nodule
        values = {m.name.meaning: (float(m.value), m.unit.value) for m in group.get_measurements()}
        assert values["Diameter"] == (pytest.approx(float(row["diameter_mm"]), abs=1e-3), "mm")
        assert values["Volume"] == (pytest.approx(float(row["volume_mm3"]), abs=1e-3), "mm3")
        assert values["Certainty of Finding"] == (
            pytest.approx(100 * float(row["probability"]), abs=1e-4),
            "%",
        )
        assert values["Probability of cancer"] == (
            pytest.approx(100 * float(row["malignancy"]), abs=1e-4),
            "%",
        )
        texture = [q.value for q in group.get_qualitative_evaluations() if q.name.value == "texture"]
        assert [t.value for t in texture] == [row["texture"]]
        referenced = group.referenced_segment[0].ReferencedSOPSequence[0]  # the IMAGE item
        assert referenced.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        segment = segments[referenced.ReferencedSegmentNumber]  # a segment the SEG has
        assert segment.SegmentLabel == group.tracking_identifier
        assert segment.TrackingUID == group.tracking_uid


def test_no_reported_finding_gives_an_sr_saying_so_and_no_seg(series, tmp_path):
    folder, uids = series
    stale = tmp_path / "dicom/chest/seg.dcm"  # an earlier run's SEG, for findings no longer reported
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (record,) = run(_classical(threshold=1.0), expand_scans([folder]), tmp_path).scans
    assert record["findings"] and record["dicom"] == {"seg": None, "sr": "dicom/chest/sr.dcm"}
    assert not stale.exists()
    sr = hd.sr.srread(tmp_path / "dicom/chest/sr.dcm")
    assert sr.StudyInstanceUID == uids["study"]
    (group,) = sr.content.get_image_measurement_groups()
    assert not sr.content.get_volumetric_roi_measurement_groups()
    assert group.tracking_identifier == "no nodule found" and not group.get_measurements()
    (evaluation,) = group.get_qualitative_evaluations()
    assert evaluation.value == codes.DCM.AllAlgorithmsSucceededWithoutFindings


class OneCandidate:
    """The larger nodule's centre, 9 mm, probability 0.8."""

    def __init__(self, options):
        pass

    def detect(self, ct):
        (k, cy, cx), _ = NODULES[0]
        centre = (cx + COLUMNS / 2 * SPACING[0] + ORIGIN[0], cy + ROWS / 2 * SPACING[1] + ORIGIN[1])
        return [Candidate((*centre, ORIGIN[2] + k * SPACING[2]), 9.0, 0.8)]


class NoMask:
    def __init__(self, options):
        pass

    def segment(self, ct, candidates):
        return [None for _ in candidates]


def test_a_finding_without_a_mask_is_measured_in_the_sr_without_a_segment(series, tmp_path):
    folder, _ = series
    registry = Registry()
    registry.add(ComponentSpec("one", "detector", OneCandidate))
    registry.add(ComponentSpec("none", "segmenter", NoMask, cpu_only=True))
    pipe = Pipeline.from_registry(registry, "one", "none", [], device="cpu")
    (record,) = run(pipe, expand_scans([folder]), tmp_path).scans
    assert record["dicom"] == {"seg": None, "sr": "dicom/chest/sr.dcm"}, record.get("error")
    sr = hd.sr.srread(tmp_path / "dicom/chest/sr.dcm")
    assert not sr.content.get_volumetric_roi_measurement_groups()
    (group,) = sr.content.get_image_measurement_groups()
    assert group.tracking_identifier == "nodule 1" and group.finding_type == codes.SCT.Nodule
    values = {m.name.meaning: float(m.value) for m in group.get_measurements()}
    assert values == {"Diameter": 9.0, "Certainty of Finding": 80.0}  # no volume, malignancy or texture
    assert not [q for q in group.get_qualitative_evaluations() if q.name.value == "texture"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"drop": ("FrameOfReferenceUID",)}, "has no FrameOfReferenceUID"),
        ({"shift": {17: 0.5}}, "does not lie on the grid the scan was read on"),
    ],
)
def test_a_series_that_cannot_be_referenced_fails_its_scan_only(tmp_path, damage, message):
    _write_series(tmp_path / "odd", **damage)
    other = tmp_path / "plain.mhd"  # not DICOM: no DICOM output, and it goes on
    write_image(other, _chest(), Geometry(ORIGIN, SPACING))
    summary = run(_classical(), expand_scans([tmp_path / "odd", other]), tmp_path / "out")
    (failed,) = summary.failed
    assert failed["seriesuid"] == "odd" and failed["failure"]["stage"] == "write"
    assert message in failed["error"] and "cannot write the DICOM SEG/SR" in failed["error"]
    assert "\n" not in failed["error"]
    assert not (tmp_path / "out/dicom/odd").exists() or not any((tmp_path / "out/dicom/odd").iterdir())
    ok = next(s for s in summary.scans if s["seriesuid"] == "plain")
    assert ok["dicom"] is None and ok["findings"] and not (tmp_path / "out/dicom/plain").exists()


def test_resume_reuses_the_dicom_outputs_while_they_are_there(series, done, tmp_path):
    folder, _ = series
    out = tmp_path / "out"
    shutil.copytree(done[0], out)
    again = run(_classical(), expand_scans([folder]), out, resume=True)
    assert again.resumed == 1 and again.scans[0]["dicom"] == done[1]["dicom"]
    (out / "dicom/chest/sr.dcm").unlink()
    redone = run(_classical(), expand_scans([folder]), out, resume=True)
    assert redone.resumed == 0 and (out / "dicom/chest/sr.dcm").is_file()
    record = json.loads((out / "scans/chest.json").read_text())
    del record["dicom"]  # a record from before DICOM output: the scan is done again to make it
    (out / "scans/chest.json").write_text(json.dumps(record))
    assert run(_classical(), expand_scans([folder]), out, resume=True).resumed == 0


def test_a_full_disk_while_writing_the_seg_stops_the_run_naming_it(series, tmp_path, monkeypatch):
    folder, _ = series

    def full(self, filename, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", full)
    with pytest.raises(
        OutputError, match=r"out/dicom/chest/seg\.dcm: cannot write: the disk is full.*--resume"
    ):
        run(_classical(), expand_scans([folder]), tmp_path / "out")


def test_a_scan_not_read_from_dicom_needs_neither_pydicom_nor_highdicom(tmp_path, monkeypatch):
    # the DICOM libraries are imported only for DICOM input (found missing on a GPU machine's image)
    write_image(tmp_path / "chest.mhd", _chest(), Geometry(ORIGIN, SPACING))
    blocked = ("pydicom", "highdicom")
    for name in {*blocked, *(m for m in sys.modules if m.split(".")[0] in blocked)}:
        monkeypatch.setitem(sys.modules, name, None)  # its import fails (a submodule's too: pydicom.uid)
    summary = run(_classical(), expand_scans([tmp_path / "chest.mhd"]), tmp_path / "out")
    assert not summary.failed and len(summary.scans) == 1
    assert not (tmp_path / "out" / "dicom").exists()
