"""DICOM in, DICOM out: for a scan read from a DICOM series, its reported findings as a DICOM SEG and a
DICOM SR (TID 1500 measurement report), both referencing the source series, so that a PACS viewer or 3D
Slicer shows them beside the scan. Written with highdicom.

OUT/dicom/<uid>/
  seg.dcm   Segmentation (BINARY): one segment per reported finding that has a mask, labelled
            "nodule K" (K: the finding's number in findings.csv), voxel for voxel the labels of
            masks/<uid>.nii.gz; none when no reported finding has a mask (a SEG needs a segment)
  sr.dcm    Comprehensive 3D SR, TID 1500: per reported finding a measurement group (TID 1411 referencing
            its SEG segment, or TID 1501 for a finding without a mask) with its diameter, volume,
            detection probability, malignancy probability and texture where a classifier gave them; a
            scan without reported findings gets one group saying the analysis found none

Nothing is written for other inputs (MHD, NIfTI, NRRD).
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lungtk.core import atomic_path
from lungtk.core.threads import PROCESS_STATE_LOCK
from lungtk.pipeline.contract import ScanError, one_line
from lungtk.pipeline.engine import MAX_LABEL, distribution_version

FOLDER = "dicom"
SEG_NAME, SR_NAME = "seg.dcm", "sr.dcm"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 901, 902
MANUFACTURER, MODEL = "lungtk", "lungtk-pipeline"
# Where a slice may lie off the grid the scan was read on (in voxels) and still be that grid's slice.
POSITION_TOLERANCE = 0.1
ORIENTATION_TOLERANCE = 1e-3
# DICOM has no codes for lungtk's texture classes (part-solid above all): a private coding scheme.
LOCAL_SCHEME = "99LUNGTK"
# What a SEG and an SR must copy from the source slices to reference them.
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def _codes() -> Any:
    from pydicom.sr.codedict import codes

    return codes


def is_dicom_input(path: Path) -> bool:
    """Whether ``path`` names a DICOM series (a folder, or a slice standing for its folder)."""
    from lungtk.ct_io.io.formats import format_of

    return format_of(path) == "dicom"


def recorded_files(record: dict[str, Any], path: Path) -> list[Any] | None:
    """The DICOM outputs a saved scan record lists (for ``--resume`` to check they are still there), or
    ``None`` when the record should list them and does not (a DICOM input done before they were made)."""
    if FOLDER not in record:
        return None if is_dicom_input(path) else []
    dicom = record[FOLDER]
    if dicom is None:  # not read from a DICOM series: nothing was written
        return []
    if not isinstance(dicom, dict):
        return None
    return [dicom.get("sr"), *([dicom["seg"]] if dicom.get("seg") is not None else [])]


# -- the source series -------------------------------------------------------------------------------------
def _failure(folder: Path, series: str, problem: str) -> ScanError:
    return ScanError(f"{folder}: cannot write the DICOM SEG/SR of series {series}: {problem}", stage="write")


def source_slices(ct: Any, path: Path) -> list[Any] | None:
    """The headers (pydicom datasets, no pixels) of the slices ``ct`` was read from, in the order of its
    first array axis, or ``None`` when ``path`` holds no DICOM series (the scan was not read from DICOM).

    The order comes from each slice's Image Position (Patient) on the grid the scan was read on, not
    from the file order; a slice that does not sit on that grid (unevenly spaced or tilted slices) or a
    header that does not match the volume fails the scan."""
    if not is_dicom_input(path):
        return None
    import pydicom

    from lungtk.ct_io.io.sitk import dicom_series

    folder = path if path.is_dir() else path.parent
    series = ct.series_uid
    found = dicom_series(folder)
    if not found:
        return None
    if series not in found:
        raise _failure(folder, series, "the folder holds no slices of that series")
    slices = []
    for name in found[series]:
        try:
            slices.append(pydicom.dcmread(name, stop_before_pixels=True))
        except Exception as exc:  # pydicom raises InvalidDicomError, ValueError, ... for damaged files
            raise _failure(
                folder, series, f"{Path(name).name} cannot be read by pydicom: {one_line(exc)}"
            ) from None
    return _in_volume_order(slices, ct, folder)


def _in_volume_order(slices: list[Any], ct: Any, folder: Path) -> list[Any]:
    series = ct.series_uid
    n, rows, columns = ct.shape
    if len(slices) != n:
        raise _failure(folder, series, f"it has {len(slices)} slices, but the volume read has {n}")
    direction = ct.geometry.direction
    expected = np.concatenate([direction[:, 0], direction[:, 1]])
    placed: dict[int, Any] = {}
    for ds in slices:
        name = Path(str(ds.filename)).name if getattr(ds, "filename", None) else ds.get("SOPInstanceUID")
        try:
            position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
            size = (int(ds.Rows), int(ds.Columns))
        except (AttributeError, TypeError, ValueError) as exc:
            raise _failure(folder, series, f"slice {name} lacks a usable header ({one_line(exc)})") from None
        missing = [k for k in REQUIRED if not str(ds.get(k, "") or "").strip()]
        if missing:
            raise _failure(folder, series, f"slice {name} has no {', '.join(missing)}")
        if position.shape != (3,) or orientation.shape != (6,):
            raise _failure(folder, series, f"slice {name} has a malformed position or orientation")
        if size != (rows, columns):
            raise _failure(
                folder, series, f"slice {name} is {size[0]}x{size[1]}, the volume {rows}x{columns}"
            )
        if np.max(np.abs(orientation - expected)) > ORIENTATION_TOLERANCE:
            raise _failure(folder, series, f"slice {name} is oriented unlike the rest of the series")
        irc = ct.geometry.xyz2irc(position, continuous=True)
        index = int(np.rint(irc[0]))
        off = np.abs(irc - (index, 0.0, 0.0))
        if np.max(off) > POSITION_TOLERANCE or not 0 <= index < n or index in placed:
            raise _failure(
                folder,
                series,
                f"slice {name} does not lie on the grid the scan was read on (its slices are unevenly "
                "spaced, tilted or duplicated), so the masks cannot be placed on them",
            )
        placed[index] = ds
    frames = {str(ds.FrameOfReferenceUID) for ds in slices}
    if len(frames) != 1:
        raise _failure(folder, series, f"its slices name {len(frames)} frames of reference, not one")
    return [placed[k] for k in range(n)]


# -- the outputs ---------------------------------------------------------------------------------------------


def _segment_algorithm(pipeline: Any) -> Any:
    import highdicom as hd

    codes = _codes()
    segmenter = pipeline.segmenter
    about = segmenter.describe()
    learned = segmenter.options is not None and segmenter.options.weights is not None
    family = codes.cid7162.ArtificialIntelligence if learned else codes.cid7162.NeighborhoodAnalysis
    detector = pipeline.detector.describe()
    return hd.AlgorithmIdentificationSequence(
        name=f"lungtk {about['name']}"[:64],
        family=family,
        version=str(about["version"])[:64],
        source=str(about["distribution"])[:64],
        parameters={"detector": f"{detector['name']} {detector['version']}"[:64]},
    )


def _measurement_algorithm(pipeline: Any) -> Any:
    import highdicom as hd

    about = pipeline.describe()
    parts = [about["detector"], about["segmenter"], *about["classifiers"]]
    return hd.sr.AlgorithmIdentification(
        name=MODEL,
        version=distribution_version(MODEL),
        parameters=[f"{p['name']} ({p['distribution']} {p['version']})"[:64] for p in parts],
    )


def _segmentation(
    slices: list[Any], labels: NDArray[Any], present: list[int], rows: dict[int, Any], pipeline: Any
) -> Any:
    import highdicom as hd
    from pydicom.uid import generate_uid

    codes = _codes()
    lut = np.zeros(MAX_LABEL + 1, dtype=np.uint8)  # finding number -> segment number (1..len(present))
    for segment, finding in enumerate(present, start=1):
        lut[finding] = segment
    algorithm = _segment_algorithm(pipeline)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=segment,
            segment_label=f"nodule {finding}",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=rows[finding]["tracking_uid"],
            tracking_id=f"nodule {finding}",
        )
        for segment, finding in enumerate(present, start=1)
    ]
    return hd.seg.Segmentation(
        source_images=slices,
        pixel_array=lut[labels],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL,
        software_versions=distribution_version(MODEL),
        device_serial_number="0",  # software: no serial number
        content_description="lungtk nodule segmentation",
        content_label="NODULES",
        series_description="lungtk nodules",
    )


def _texture(row: dict[str, Any]) -> Any:
    """The texture a classifier gave (none when the pipeline assumed one), as a qualitative evaluation."""
    import highdicom as hd

    if row.get("texture_assumed") or not row.get("texture"):
        return None
    name = hd.sr.CodedConcept("texture", LOCAL_SCHEME, "Nodule texture")
    value = hd.sr.CodedConcept(str(row["texture"])[:16], LOCAL_SCHEME, str(row["texture"]).capitalize())
    return hd.sr.QualitativeEvaluation(name=name, value=value)


def _percent(probability: float) -> float:
    """A probability (0..1, six decimals in findings.csv) in percent, with no binary fraction digits."""
    return round(100.0 * float(probability), 4)


def _measurements(row: dict[str, Any]) -> list[Any]:
    import highdicom as hd

    codes = _codes()
    found = [hd.sr.Measurement(codes.SCT.Diameter, float(row["diameter_mm"]), codes.UCUM.Millimeter)]
    if row.get("volume_mm3") is not None:
        found.append(
            hd.sr.Measurement(codes.SCT.Volume, float(row["volume_mm3"]), codes.UCUM.CubicMillimeter)
        )
    # CAD templates give both probabilities in percent (0-100)
    found.append(
        hd.sr.Measurement(codes.DCM.CertaintyOfFinding, _percent(row["probability"]), codes.UCUM.Percent)
    )
    if row.get("malignancy") is not None:
        found.append(
            hd.sr.Measurement(codes.DCM.ProbabilityOfCancer, _percent(row["malignancy"]), codes.UCUM.Percent)
        )
    return found


def _report(
    slices: list[Any], seg: Any, segment_of: dict[int, int], rows: dict[int, Any], pipeline: Any
) -> Any:
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    codes = _codes()
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[MODEL]),  # the same device in every report
        name="lungtk",
        manufacturer_name=MANUFACTURER,
        model_name=MODEL,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    algorithm = _measurement_algorithm(pipeline)
    groups: list[Any] = []
    for finding, row in rows.items():
        tracking = hd.sr.TrackingIdentifier(uid=row["tracking_uid"], identifier=f"nodule {finding}")
        evaluations = [e for e in (_texture(row),) if e is not None]
        common = {
            "tracking_identifier": tracking,
            "finding_type": codes.SCT.Nodule,
            "finding_category": codes.SCT.MorphologicallyAbnormalStructure,
            "algorithm_id": algorithm,
            "measurements": _measurements(row),
            "qualitative_evaluations": evaluations or None,
        }
        if seg is not None and finding in segment_of:
            # (ReferencedSegment.from_segmentation fails on a SEG of one segment, whose segment number
            # highdicom 0.28 puts in the shared functional groups)
            reference = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=segment_of[finding],
                source_series=hd.sr.SourceSeriesForSegmentation(slices[0].SeriesInstanceUID),
            )
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    referenced_segment=reference, **common
                )
            )
        else:  # no segment (no mask, or one wholly under another finding's): no region to point at
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
    if not groups:  # a report that the analysis ran and found nothing, not a missing report
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=generate_uid(), identifier="no nodule found"
                ),
                algorithm_id=algorithm,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(
                        codes.DCM.CADProcessingAndFindingsSummary,
                        codes.DCM.AllAlgorithmsSucceededWithoutFindings,
                    )
                ],
            )
        )
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.LN.CTChestReport, imaging_measurements=groups
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*slices, *([seg] if seg is not None else [])],
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="lungtk nodule measurements",
    )
    if any(_texture(row) is not None for row in rows.values()):  # the private codes, declared where used
        scheme = Dataset()
        scheme.CodingSchemeDesignator = LOCAL_SCHEME
        scheme.CodingSchemeName = "lungtk nodule texture classes"
        scheme.CodingSchemeResponsibleOrganization = "lungtk"
        known = list(getattr(sr, "CodingSchemeIdentificationSequence", []))
        sr.CodingSchemeIdentificationSequence = [*known, scheme]
    return sr


def _save(dataset: Any, target: Path) -> None:
    """Write ``dataset`` atomically; an ``OSError`` becomes a ``CTWriteError`` naming ``target``."""
    from lungtk.ct_io.errors import writing

    with writing(target), atomic_path(target) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)


def write_dicom(
    out: Path,
    uid: str,
    path: Path,
    ct: Any,
    labels: NDArray[Any],
    reported: Sequence[Any],
    pipeline: Any,
) -> dict[str, str | None] | None:
    """Write ``dicom/<uid>/seg.dcm`` and ``sr.dcm`` for a scan read from a DICOM series: ``labels`` is the
    label volume of masks/<uid>.nii.gz (label K: finding K) in the scan's array order, ``reported`` the
    reported findings' rows. Returns their paths relative to ``out`` (``seg`` None when there is no
    segment to write), or ``None`` for a scan not read from DICOM (nothing is written).

    A source series whose headers cannot be referenced fails the scan (:class:`ScanError`, stage write);
    a file that cannot be written raises a ``CTWriteError`` naming it (caused by the ``OSError``)."""
    slices = source_slices(ct, path)
    if slices is None:
        return None
    from pydicom.uid import generate_uid

    folder = Path(FOLDER) / uid
    rows: dict[int, dict[str, Any]] = {}
    for row in reported[:MAX_LABEL]:  # the label volume holds MAX_LABEL findings at most
        rows[int(row.finding)] = {**row.as_dict(), "tracking_uid": generate_uid()}
    present = [int(k) for k in np.unique(labels) if k and int(k) in rows]
    if sum(k >= MAX_LABEL for k in rows) > 1:  # the last label holds every finding numbered so or more
        present = [k for k in present if k < MAX_LABEL]
    segment_of = {finding: segment for segment, finding in enumerate(present, start=1)}
    source = path if path.is_dir() else path.parent
    try:
        with PROCESS_STATE_LOCK, warnings.catch_warnings():  # e.g. a one-part patient name: the source's
            warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
            seg = _segmentation(slices, labels, present, rows, pipeline) if present else None
            sr = _report(slices, seg, segment_of, rows, pipeline)
    except ScanError:
        raise
    except Exception as exc:  # highdicom refuses what it cannot encode (odd source headers) this way
        raise ScanError(
            f"{source}: cannot write the DICOM SEG/SR of series {ct.series_uid}: highdicom "
            f"{distribution_version('highdicom')} raised {one_line(exc)}",
            stage="write",
            distribution="highdicom",
            details="".join(traceback.format_exception(exc)),
        ) from exc
    written: dict[str, str | None] = {"seg": None, "sr": str(folder / SR_NAME)}
    if seg is not None:
        _save(seg, out / folder / SEG_NAME)
        written["seg"] = str(folder / SEG_NAME)
    else:
        (out / folder / SEG_NAME).unlink(missing_ok=True)  # an earlier run's, for findings no longer there
    _save(sr, out / folder / SR_NAME)
    return written
