"""Run a pipeline over many scans and write its outputs.

OUT/
  findings.csv          LUNA16 submission columns + diameter_mm, volume_mm3, texture, malignancy
  findings.json         the same findings with texture probabilities and labels, plus provenance, timings
  fleischner.json       one recommendation per scan
  report.html           recommendation, findings table and thumbnails per scan
  masks/<uid>.nii.gz    the reported findings' labels in the scan's geometry
  thumbnails/<uid>/     PNG slices used by the report
  scans/<uid>.json      each scan's results (what --resume reuses)
"""

from __future__ import annotations

import csv
import io
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lungtk.core import LungtkError, write_text
from lungtk.core.labels import LUNA16_DIAMETER, LUNA16_ID, MALIGNANCY, SUBMISSION_COLUMNS, TEXTURE
from lungtk.pipeline.engine import STAGES, Pipeline, ScanResult, Timer, pipeline_version
from lungtk.pipeline.report import render_report, write_thumbnails

# LUNA16's submission columns, then what the pipeline measured and classified (empty when unknown).
CSV_COLUMNS = (*SUBMISSION_COLUMNS, LUNA16_DIAMETER, "volume_mm3", TEXTURE, MALIGNANCY)
MAX_THUMBNAILS = 12  # per scan, the most probable reported findings


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

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.scans if s.get("error")]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [row for s in self.scans for row in s.get("findings", [])]


def check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there, before any work is done."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".lungtk-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LungtkError(
            f"{out}: cannot write the output folder ({exc.strerror or exc}); choose another --out"
        ) from None


def _settings(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "components": pipeline.describe(),
        "threshold": pipeline.threshold,
        "scheme": pipeline.scheme,
        "risk": pipeline.risk,
    }


def _process(pipeline: Pipeline, uid: str, path: Path, out: Path) -> dict[str, Any]:
    """Analyse one scan and write its mask, thumbnails and record; a scan that cannot be read is
    recorded with its error (other errors are bugs and propagate)."""
    from lungtk.ct_io import read_ct, write_image

    result = ScanResult(uid, str(path))
    timer = Timer(result.timings)
    record: dict[str, Any] = {LUNA16_ID: uid, "path": str(path), **_settings(pipeline)}
    try:
        with timer.stage("read"):
            ct = read_ct(path)
    except (LungtkError, OSError) as exc:
        reason = str(exc) if isinstance(exc, LungtkError) else f"{exc.strerror or exc} ({path})"
        record.update(error=reason, findings=[], timings_s=result.timings)
        return record
    pipeline.analyse(ct, result)
    pipeline.recommend(result)
    with timer.stage("write"):
        mask_path = Path("masks") / f"{uid}.nii.gz"
        write_image(out / mask_path, pipeline.label_volume(ct.shape, result, ct.geometry), ct.geometry)
        thumbnails = {}
        for row, finding in pipeline.reported(result)[:MAX_THUMBNAILS]:
            names = write_thumbnails(ct, finding, out / "thumbnails" / uid, str(row.finding))
            thumbnails[str(row.finding)] = {p: f"thumbnails/{uid}/{n}" for p, n in names.items()}
    record.update(
        shape=list(ct.shape),
        spacing=[round(float(s), 4) for s in ct.geometry.spacing],
        findings=[r.as_dict() for r in result.rows],
        recommendation=result.recommendation.as_dict() if result.recommendation else None,
        mask=str(mask_path),
        thumbnails=thumbnails,
        timings_s={k: round(v, 4) for k, v in result.timings.items()},
    )
    write_text(out / "scans" / f"{uid}.json", json.dumps(record, indent=1) + "\n")
    return record


def _reusable(out: Path, uid: str, pipeline: Pipeline) -> dict[str, Any] | None:
    path = out / "scans" / f"{uid}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = all(record.get(k) == v for k, v in _settings(pipeline).items())
    return record if same and not record.get("error") and (out / record.get("mask", "")).is_file() else None


def run(
    pipeline: Pipeline,
    scans: Sequence[tuple[str, Path]],
    out: Path,
    *,
    resume: bool = False,
    on_scan: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Run ``pipeline`` on every scan; ``on_scan(uid, status)`` reports progress. Writes all outputs."""
    check_writable(out)
    summary = RunSummary(out)
    started = time.perf_counter()
    for uid, path in scans:
        record = _reusable(out, uid, pipeline) if resume else None
        reused = record is not None
        if record is not None:
            summary.resumed += 1
        else:
            record = _process(pipeline, uid, path, out)
            for stage, seconds in record.get("timings_s", {}).items():
                summary.timings[stage] = summary.timings.get(stage, 0.0) + seconds
        summary.scans.append(record)
        if on_scan:
            on_scan(uid, "failed" if record.get("error") else ("reused" if reused else "done"))
    summary.timings = {s: round(summary.timings.get(s, 0.0), 3) for s in STAGES}
    summary.timings["total"] = round(time.perf_counter() - started, 3)
    write_outputs(pipeline, summary)
    write_text(out / "findings.json", json.dumps(_findings_json(pipeline, summary), indent=1) + "\n")
    return summary


def findings_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(["" if r[column] is None else r[column] for column in CSV_COLUMNS])
    return buffer.getvalue()


def _findings_json(pipeline: Pipeline, summary: RunSummary) -> dict[str, Any]:
    return {
        "lungtk_pipeline": pipeline_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **_settings(pipeline),
        "device": pipeline.device,
        "timings_s": summary.timings,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "scans": [
            {
                LUNA16_ID: s[LUNA16_ID],
                "path": s["path"],
                "status": "failed" if s.get("error") else "ok",
                "error": s.get("error"),
                "findings": len(s.get("findings", [])),
                "mask": s.get("mask"),
                "timings_s": s.get("timings_s", {}),
            }
            for s in summary.scans
        ],
        "findings": summary.findings,
    }


def write_outputs(pipeline: Pipeline, summary: RunSummary) -> None:
    """findings.csv, fleischner.json and report.html from the per-scan records."""
    out = summary.out
    write_text(out / "findings.csv", findings_csv(summary.findings))
    recommendations = [s["recommendation"] for s in summary.scans if s.get("recommendation")]
    write_text(
        out / "fleischner.json",
        json.dumps(
            {"scheme": pipeline.scheme, "risk": pipeline.risk, "recommendations": recommendations}, indent=1
        )
        + "\n",
    )
    report_summary = {
        "components": pipeline.describe(),
        "device": pipeline.device,
        "lungtk_pipeline": pipeline_version(),
        "timings_s": {k: v for k, v in summary.timings.items() if v},
    }
    write_text(out / "report.html", render_report(report_summary, summary.scans, pipeline.threshold))
