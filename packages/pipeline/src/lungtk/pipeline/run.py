"""Run a pipeline over many scans and write its outputs.

OUT/
  findings.csv          LUNA16 submission columns + diameter_mm, volume_mm3, texture, malignancy
  findings.json         the same findings with texture probabilities and labels, plus provenance, timings
  fleischner.json       one recommendation per scan
  report.html           recommendation, findings table and thumbnails per scan
  masks/<uid>.nii.gz    the reported findings' labels in the scan's geometry
  dicom/<uid>/          for a DICOM series: seg.dcm (DICOM SEG of those masks) and sr.dcm (TID 1500
                        measurement report), referencing the source series (lungtk.pipeline.dicom_out)
  thumbnails/<uid>/     PNG slices used by the report
  scans/<uid>.json      each scan's results (what --resume reuses when the scan's files and the
                        settings are unchanged)

:func:`run` is :func:`analyse_scans` (each scan's own files) then :func:`finish` (the merged outputs);
:mod:`lungtk.pipeline.shard` runs the first in several processes and the second once.

A scan that fails (it cannot be read; a component raises or returns what breaks its contract) is recorded
with its stage, component and distribution in findings.json and report.html, and the other scans go on.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lungtk.core import LungtkError, write_text
from lungtk.core.labels import LUNA16_DIAMETER, LUNA16_ID, MALIGNANCY, PATHOLOGY, SUBMISSION_COLUMNS, TEXTURE
from lungtk.pipeline.contract import ScanError, one_line
from lungtk.pipeline.dicom_out import FOLDER as DICOM_FOLDER
from lungtk.pipeline.dicom_out import recorded_files, write_dicom
from lungtk.pipeline.engine import (
    STAGES,
    Component,
    Pipeline,
    ScanResult,
    Timer,
    distribution_version,
    pipeline_version,
)
from lungtk.pipeline.identity import source_identity
from lungtk.pipeline.report import render_report, write_thumbnails
from lungtk.pipeline.truth import match_scans, read_truth

T = TypeVar("T")

# LUNA16's submission columns, then what the pipeline measured and classified (empty when unknown).
CSV_COLUMNS = (*SUBMISSION_COLUMNS, LUNA16_DIAMETER, "volume_mm3", TEXTURE, MALIGNANCY, PATHOLOGY)
MAX_THUMBNAILS = 12  # per scan, the most probable reported findings
MAX_UID_BYTES = 200  # a series UID names files (<uid>.nii.gz, <uid>.json): it must fit a file name
# A write that fails for one of these reasons would fail for every scan: the run stops.
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


class OutputError(LungtkError):
    """An output cannot be written (a full disk, a folder that cannot be written): the run stops, naming
    the file; the scans already done are kept in scans/ for ``--resume``."""


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class RunSummary:
    """What a run did: per-scan records (as written to scans/<uid>.json), totals and where things are."""

    out: Path
    scans: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    resumed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    peak_rss_mb: float = 0.0  # the largest of the processes that analysed the scans (this one: measured)
    truth: Path | None = None  # annotations (LUNA16 columns): the report marks each nodule found or missed

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.scans if s.get("error")]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [row for s in self.scans for row in s.get("findings", [])]


def check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there, before any work is done."""
    advice = {"option": "--out", "advice": "choose another --out", "otherwise": "choose another folder"}
    if out.exists() and not out.is_dir():
        raise LungtkError(f"{out}: is a file, not a folder", **advice)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lungtk-write-test.", dir=out)  # concurrent runs: own names
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LungtkError(
            f"{out}: cannot write the output folder ({exc.strerror or exc})", **advice
        ) from None


def _settings(pipeline: Pipeline) -> dict[str, Any]:
    """Everything besides the scan that decides a scan's results: a saved result is reused only when all
    of it is the same (components and versions, their settings, weights files and precision, the
    threshold and the follow-up scheme)."""
    return {
        "components": pipeline.describe(),
        "options": {f"{c.spec.kind}:{c.spec.name}": _options(c) for c in pipeline.components},
        "threshold": pipeline.threshold,
        "scheme": pipeline.scheme,
        "risk": pipeline.risk,
    }


def _options(component: Component) -> dict[str, Any]:
    options = component.options
    if options is None:
        return {}
    weights = None
    if options.weights is not None:
        try:
            weights = {"path": str(options.weights), **source_identity(options.weights)}
        except (OSError, ValueError):
            weights = {"path": str(options.weights)}
    return {"settings": dict(options.settings), "precision": options.precision, "weights": weights}


def _given(pipeline: Pipeline, uid: str) -> Any:
    """The given locations of ``uid`` (a ready-made detector such as a candidates table), as a digest."""
    by_scan = getattr(pipeline.detector.instance, "by_scan", None)
    if not pipeline.detector.supplied:
        return None
    if not isinstance(by_scan, dict):
        return "unknown"  # a detector given by the caller that cannot say what it gives: never reused
    rows = [c.as_dict() for c in by_scan.get(uid, [])]
    return hashlib.blake2b(json.dumps(rows, sort_keys=True).encode(), digest_size=16).hexdigest()


def _strict(data: Any) -> str:
    """JSON that any reader accepts: NaN or infinity anywhere is a bug caught here, not a bare ``NaN``."""
    return json.dumps(data, indent=1, allow_nan=False) + "\n"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _writing(target: Path, write: Callable[[], T], *, scan_level: bool = False) -> T:
    """Run ``write`` (which writes ``target``); a failure names ``target``, never a temporary file. A full
    disk or a folder that cannot be written stops the run (:class:`OutputError`); any other failure of a
    scan's own file (``scan_level``) fails that scan only."""
    try:
        return write()
    except (ScanError, OutputError):
        raise
    except LungtkError as exc:  # a writer that names its file itself (lungtk.ct_io's CTWriteError)
        cause = exc.__cause__ or exc.__context__
        code = cause.errno if isinstance(cause, OSError) else None
        if scan_level and code not in STOP_ERRNOS:
            raise ScanError(one_line(exc), stage="write") from exc
        raise OutputError(one_line(exc), **_RESUME) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if scan_level and exc.errno not in STOP_ERRNOS:
            raise ScanError(f"{target}: cannot write ({reason})", stage="write") from exc
        raise OutputError(
            f"{target}: cannot write ({reason}); free some space or fix the folder's permissions (or write "
            "elsewhere)",
            **_RESUME,
        ) from None


# what to do after a stopped run, where the command can resume (lungtk pipeline run) and where not (demo)
_RESUME: dict[str, Any] = {
    "option": "--resume",
    "advice": "then run again with --resume to keep the scans already done",
    "otherwise": "then run again",
}


def _read(path: Path) -> Any:
    """``read_ct(path)``; every way it can fail is a :class:`ScanError` of the read stage."""
    from lungtk.ct_io import read_ct

    reader = "lungtk-ct-io"
    try:
        ct = read_ct(path)
    except LungtkError as exc:
        raise ScanError(one_line(exc), stage="read", distribution=reader) from exc
    except OSError as exc:
        raise ScanError(
            f"{path}: cannot be read ({exc.strerror or exc})", stage="read", distribution=reader
        ) from exc
    except MemoryError as exc:
        raise ScanError(f"{path}: too large to read into memory", stage="read", distribution=reader) from exc
    except Exception as exc:
        raise ScanError(
            f"{path}: cannot be read: {reader} {distribution_version(reader)} raised {one_line(exc)}; report this to the "
            f"maintainers of {reader}",
            stage="read",
            distribution=reader,
            details="".join(traceback.format_exception(exc)),
        ) from exc
    shape = np.shape(ct.array)
    if len(shape) != 3 or 0 in shape:
        raise ScanError(f"{path}: holds no 3D volume (shape {shape})", stage="read", distribution=reader)
    return ct


def _check_uid(uid: str) -> None:
    """A series UID names the scan's files in OUT, so it must be a plain file name."""
    if (
        not isinstance(uid, str)
        or uid.strip() in ("", ".", "..")
        or "/" in uid
        or any(ord(c) < 32 for c in uid)
        or len(uid.encode("utf-8", "surrogateescape")) > MAX_UID_BYTES
    ):
        raise ScanError(
            f"series UID {uid!r} cannot name a file (empty, a path, control characters or over "
            f"{MAX_UID_BYTES} bytes); rename the scan",
            stage="read",
        )


def _process(
    pipeline: Pipeline,
    uid: str,
    path: Path,
    out: Path,
    source: Any,
    settings: dict[str, Any],
    reading: Future[Any] | None = None,
) -> dict[str, Any]:
    """Analyse one scan and write its mask, thumbnails and record. Whatever goes wrong with this scan - it
    cannot be read, a component raises or breaks its contract - is recorded in the returned record (with
    the stage, the component and its distribution) and the run goes on; only an output that cannot be
    written (:class:`OutputError`) stops the run."""
    from lungtk.ct_io import write_image

    result = ScanResult(uid, str(path))
    timer = Timer(result.timings, result)
    base: dict[str, Any] = {
        LUNA16_ID: uid,
        "path": str(path),
        **settings,
        "source": source,
        "given": _given(pipeline, uid),
    }
    record = dict(base)
    try:
        _check_uid(uid)
        with timer.stage("read"):  # the wait, when the scan was read ahead
            ct = _read(path) if reading is None else reading.result()
        pipeline.analyse(ct, result)
        pipeline.recommend(result)
        record.update(
            shape=[int(n) for n in ct.shape],
            spacing=[round(float(s), 4) for s in ct.geometry.spacing],
            findings=[r.as_dict() for r in result.rows],
            recommendation=result.recommendation.as_dict() if result.recommendation else None,
        )
        _strict(record)  # no NaN reaches the outputs
        with timer.stage("write"):
            mask_path = Path("masks") / f"{uid}.nii.gz"
            labels = pipeline.label_volume(ct.shape, result, ct.geometry)
            _writing(
                out / mask_path, lambda: write_image(out / mask_path, labels, ct.geometry), scan_level=True
            )
            thumbnails = {}
            for row, finding in pipeline.reported(result)[:MAX_THUMBNAILS]:
                folder = out / "thumbnails" / uid
                names = _writing(
                    folder,
                    lambda f=finding, r=row, d=folder: write_thumbnails(ct, f, d, str(r.finding)),
                    scan_level=True,
                )
                thumbnails[str(row.finding)] = {p: f"thumbnails/{uid}/{n}" for p, n in names.items()}
            reported = [row for row, _ in pipeline.reported(result)]
            dicom = _writing(
                out / DICOM_FOLDER / uid,
                lambda: write_dicom(out, uid, path, ct, labels, reported, pipeline),
                scan_level=True,
            )
        record.update(
            mask=str(mask_path),
            dicom=dicom,
            thumbnails=thumbnails,
            timings_s={k: round(v, 4) for k, v in result.timings.items()},
        )
        target = out / "scans" / f"{uid}.json"
        text = _strict(record)
        _writing(target, lambda: write_text(target, text), scan_level=True)
    except OutputError:
        raise
    except ScanError as exc:
        return _failed(base, result, str(exc), exc.as_record(), exc.details)
    except Exception as exc:  # a bug in lungtk itself, met on this scan: the other scans still run
        stage = result.stage or "read"
        failure = {"stage": stage, "kind": None, "component": None, "distribution": "lungtk-pipeline"}
        message = (
            f"the {stage} stage failed: {one_line(exc)}; this is a bug in lungtk-pipeline "
            f"{pipeline_version()}, please report it with the traceback in findings.json"
        )
        return _failed(base, result, message, failure, "".join(traceback.format_exception(exc)))
    return record


def _failed(
    base: dict[str, Any], result: ScanResult, message: str, failure: dict[str, Any], details: str | None
) -> dict[str, Any]:
    record = {**base, "error": message, "failure": failure, "findings": [], "timings_s": result.timings}
    record["timings_s"] = {k: round(v, 4) for k, v in result.timings.items()}
    if details:
        record["traceback"] = details
    return record


def _reusable(
    out: Path, uid: str, path: Path, source: Any, pipeline: Pipeline, settings: dict[str, Any]
) -> dict[str, Any] | None:
    """The saved record of ``uid`` when it was made from the same scan (its identity: sizes, times and
    content hashes) with the same components and settings, and its mask and thumbnails are still there."""
    if source is None:
        return None
    try:
        record = json.loads(
            (out / "scans" / f"{uid}.json").read_text(encoding="utf-8"), parse_constant=_refuse_constant
        )
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get(LUNA16_ID) != uid or record.get("error"):
        return None
    if record.get("given") == "unknown" or record.get("given") != _given(pipeline, uid):
        return None
    if record.get("source") != source or any(record.get(k) != v for k, v in settings.items()):
        return None
    findings, thumbnails = record.get("findings"), record.get("thumbnails")
    if not isinstance(findings, list) or not all(
        isinstance(f, dict) and all(c in f for c in CSV_COLUMNS) for f in findings
    ):
        return None
    files = [record.get("mask")]
    dicom = recorded_files(record, path)  # a DICOM input's SEG and SR
    if dicom is None:
        return None
    files += dicom
    if isinstance(thumbnails, dict):
        files += [name for pics in thumbnails.values() if isinstance(pics, dict) for name in pics.values()]
    else:
        return None
    if not all(isinstance(f, str) and f and (out / f).is_file() for f in files):
        return None
    record["path"] = str(path)  # the same scan, wherever it is now
    return record


def _identity(path: Path) -> Any:
    try:
        return source_identity(path)
    except (OSError, ValueError):
        return None  # cannot be read: the read stage says why


def check_unique(scans: Sequence[tuple[str, Path]]) -> None:
    """Each series UID names its files in OUT: a scan given twice is an error."""
    uids = [uid for uid, _ in scans]
    twice = sorted({u for u in uids if uids.count(u) > 1})
    if twice:
        raise LungtkError(f"series UID {twice[0]!r} is given more than once; each scan must be given once")


def check_run(scans: Sequence[tuple[str, Path]], out: Path, truth: Path | None = None) -> None:
    """What every run checks before it analyses a scan, in one process or several: each scan is given
    once, OUT can be written, and the annotations table (``truth``), if any, can be matched to the scans
    (a bad table is one line now, not after the last scan)."""
    check_unique(scans)
    check_writable(out)
    if truth is not None:
        read_truth(truth, per_scan=True)


def run(
    pipeline: Pipeline,
    scans: Sequence[tuple[str, Path]],
    out: Path,
    *,
    resume: bool = False,
    on_scan: Callable[[str, str, dict[str, Any]], None] | None = None,
    truth: Path | None = None,
    read_ahead: bool | None = None,
) -> RunSummary:
    """Run ``pipeline`` on every scan and write all outputs (``read_ahead``: see :func:`analyse_scans`); ``on_scan(uid, status, record)`` reports
    progress (status ``done``, ``reused`` or ``failed``; a failed record's ``error`` says why). With
    ``truth`` (an annotations table: seriesuid, coordX..Z, diameter_mm), the report lists each annotated
    nodule as found or missed.

    A scan that fails (unreadable, or a component that raises or returns what breaks its contract) is
    recorded and the others go on: see :attr:`RunSummary.failed`. An output that cannot be written stops
    the run with an :class:`OutputError` naming the file."""
    check_run(scans, out, truth)
    started = time.perf_counter()
    summary = analyse_scans(pipeline, scans, out, resume=resume, on_scan=on_scan, read_ahead=read_ahead)
    summary.truth = truth
    return finish(summary, started)


def analyse_scans(
    pipeline: Pipeline,
    scans: Sequence[tuple[str, Path]],
    out: Path,
    *,
    resume: bool = False,
    on_scan: Callable[[str, str, dict[str, Any]], None] | None = None,
    read_ahead: bool | None = None,
) -> RunSummary:
    """Analyse each scan (or reuse its saved record, with ``resume``) and write its own files: its record
    ``scans/<uid>.json``, mask and thumbnails; not the merged outputs (:func:`finish` writes those). The
    summary's timings are seconds per stage summed over the scans analysed here.

    ``read_ahead`` (default: when the pipeline runs on CUDA) reads the next scan in a thread while this one
    is analysed, so the GPU does not wait for decoding; on the CPU the two would share the same cores."""
    if read_ahead is None:
        read_ahead = pipeline.device.startswith("cuda")
    settings = _settings(pipeline)
    summary = RunSummary(out, settings=settings, device=pipeline.device)

    def plan(uid: str, path: Path) -> tuple[str, Path, Any, dict[str, Any] | None]:
        source = _identity(path)
        return uid, path, source, _reusable(out, uid, path, source, pipeline, settings) if resume else None

    # With read_ahead, the next scan to analyse is read (decoded) in a thread while this one is analysed:
    # on a GPU the reading of scan k+1 overlaps the networks on scan k. At most two scans are in memory.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lungtk-read") as reader:
        following = plan(scans[0][0], Path(scans[0][1])) if scans else None
        ahead: Future[Any] | None = None
        for i in range(len(scans)):
            assert following is not None
            uid, path, source, record = following
            reading, ahead = ahead, None
            following = plan(scans[i + 1][0], Path(scans[i + 1][1])) if i + 1 < len(scans) else None
            if read_ahead and following is not None and following[3] is None and record is None:
                ahead = reader.submit(_read, following[1])  # both to analyse: read the next one now
            reused = record is not None
            if record is not None:
                summary.resumed += 1
            else:
                record = _process(pipeline, uid, path, out, source, settings, reading)
                for stage, seconds in record.get("timings_s", {}).items():
                    summary.timings[stage] = summary.timings.get(stage, 0.0) + seconds
            summary.scans.append(record)
            if on_scan:
                on_scan(uid, "failed" if record.get("error") else ("reused" if reused else "done"), record)
    summary.peak_rss_mb = peak_rss_mb()
    return summary


def finish(summary: RunSummary, started: float) -> RunSummary:
    """Write the merged outputs (findings.csv, findings.json, fleischner.json, report.html) of the scans
    in ``summary``, in their order; ``started`` is the run's ``time.perf_counter()`` at its start."""
    summary.timings = {s: round(summary.timings.get(s, 0.0), 3) for s in STAGES}
    summary.timings["total"] = round(time.perf_counter() - started, 3)
    summary.peak_rss_mb = max(summary.peak_rss_mb, peak_rss_mb())
    write_outputs(summary)
    target = summary.out / "findings.json"
    text = _strict(_findings_json(summary))
    _writing(target, lambda: write_text(target, text))
    return summary


def findings_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(["" if r[column] is None else r[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def _findings_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "lungtk_pipeline": pipeline_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **summary.settings,
        "device": summary.device,
        "timings_s": summary.timings,
        "peak_rss_mb": round(summary.peak_rss_mb, 1),
        "failed": len(summary.failed),
        "scans": [
            {
                LUNA16_ID: s[LUNA16_ID],
                "path": s["path"],
                "status": "failed" if s.get("error") else "ok",
                "error": s.get("error"),
                **({"failure": s["failure"]} if s.get("failure") else {}),
                **({"traceback": s["traceback"]} if s.get("traceback") else {}),
                "findings": len(s.get("findings", [])),
                "mask": s.get("mask"),
                "timings_s": s.get("timings_s", {}),
            }
            for s in summary.scans
        ],
        "findings": summary.findings,
    }


def write_outputs(summary: RunSummary) -> None:
    """findings.csv, fleischner.json and report.html from the per-scan records and the run's settings."""
    out, settings = summary.out, summary.settings
    recommendations = [s["recommendation"] for s in summary.scans if s.get("recommendation")]
    report_summary = {
        "components": settings["components"],
        "device": summary.device,
        "lungtk_pipeline": pipeline_version(),
        "timings_s": {k: v for k, v in summary.timings.items() if v},
    }
    truth = (
        None
        if summary.truth is None
        else match_scans(read_truth(summary.truth, per_scan=True), summary.scans, settings["threshold"])
    )
    texts = {
        "findings.csv": findings_csv(summary.findings),
        "fleischner.json": _strict(
            {"scheme": settings["scheme"], "risk": settings["risk"], "recommendations": recommendations}
        ),
        "report.html": render_report(report_summary, summary.scans, settings["threshold"], truth),
    }
    for name, text in texts.items():
        _writing(out / name, lambda t=out / name, x=text: write_text(t, x))
