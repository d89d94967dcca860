"""The pipeline's pictures and its HTML report: per finding, axial / coronal / sagittal slices through its
centre in the lung window with the mask's contour, at the voxels' true aspect."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from lungtk.core import Finding, Volume
from lungtk.core.labels import AIR_HU, LUNA16_ID, LUNA16_PROBABILITY, is_reported
from lungtk.ct_io.crops import crop_array, crop_bounds, paste
from lungtk.ct_io.render import LUNG_WINDOW, heat, overlay, upscale, window, write_png
from lungtk.pipeline.truth import TruthMatch, unmatched_findings

PLANES = ("axial", "coronal", "sagittal")
UNCERTAINTY = "uncertainty"  # the view of the segmenter's entropy map, when it gives one
VIEWS = (*PLANES, UNCERTAINTY)
MAX_ENTROPY = float(np.log(2))  # nats: a voxel the augmented predictions split evenly on
THUMBNAIL_PX = 160


def finding_views(
    ct: Volume, finding: Finding, *, size_px: int = THUMBNAIL_PX
) -> dict[str, NDArray[np.uint8]]:
    """RGB thumbnails of ``finding``: the three planes through its centre, head up in the coronal and
    sagittal views, its mask outlined in red; with the segmenter's uncertainty map, also that map on the
    axial plane (black: sure, white: ln 2 nats) with the mask outlined in blue."""
    candidate = finding.candidate
    spacing = ct.geometry.spacing_irc
    fov_mm = float(np.clip(3.0 * candidate.diameter_mm, 32.0, 96.0))
    size = np.maximum(np.round(fov_mm / spacing).astype(int) | 1, 3)
    center = ct.geometry.xyz2irc(candidate.center_xyz, continuous=True)
    start = crop_bounds(center, size)
    hu = crop_array(np.asarray(ct.array), start, size, AIR_HU)
    mask = np.zeros(hu.shape, dtype=bool)
    doubt = None
    if finding.mask is not None and finding.mask.mask.any():
        paste(mask, finding.mask.mask, finding.mask.start_in(ct.geometry) - start, op="max")
    if finding.mask is not None and finding.mask.uncertainty is not None:
        doubt = np.zeros(hu.shape, dtype=np.float32)
        paste(doubt, finding.mask.uncertainty, finding.mask.start_in(ct.geometry) - start, op="max")
    c = size // 2
    sections = {
        "axial": (window(hu[c[0]], LUNG_WINDOW), mask[c[0]], spacing[1], spacing[2]),
        "coronal": (window(hu[::-1, c[1], :], LUNG_WINDOW), mask[::-1, c[1], :], spacing[0], spacing[2]),
        "sagittal": (window(hu[::-1, :, c[2]], LUNG_WINDOW), mask[::-1, :, c[2]], spacing[0], spacing[1]),
    }
    if doubt is not None:  # the axial entropy map of the segmenter's test-time augmentation, same contour
        sections[UNCERTAINTY] = (heat(doubt[c[0]], MAX_ENTROPY), mask[c[0]], spacing[1], spacing[2])
    views = {}
    for plane, (image, outline_of, row_mm, col_mm) in sections.items():
        rgb = overlay(image, outline_of, (64, 160, 255) if plane == UNCERTAINTY else (255, 64, 64))
        scale = size_px / max(image.shape[0] * row_mm, image.shape[1] * col_mm)
        views[plane] = upscale(rgb, row_mm * scale, col_mm * scale)
    return views


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc;word-break:break-all}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .6em;border-bottom:1px solid #e4e4e4;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td.l,th.l{text-align:left}
.rec{background:#f3f7fb;border-left:4px solid #3b7dd8;padding:.6em 1em;margin:.8em 0}
.cat{font-weight:600}.views{display:flex;gap:1.2em;flex-wrap:wrap;margin:.6em 0}
figure{margin:0}figcaption{font-size:.85em;color:#555}img{image-rendering:pixelated;display:block}
.thumbs{display:flex;gap:4px}.error{color:#b00020}.muted{color:#666;font-size:.9em}
"""


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _findings_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "<tr><th>#</th><th>x mm</th><th>y mm</th><th>z mm</th><th>probability</th><th>diameter mm</th>"
        "<th>volume mm³</th><th>solid part mm</th><th class=l>texture</th><th>malignancy</th></tr>"
    )
    body = "".join(
        f"<tr><td>{r['finding']}</td><td>{_fmt(r['coordX'])}</td><td>{_fmt(r['coordY'])}</td>"
        f"<td>{_fmt(r['coordZ'])}</td><td>{_fmt(r['probability'], 2)}</td><td>{_fmt(r['diameter_mm'])}</td>"
        f"<td>{_fmt(r['volume_mm3'], 0)}</td><td>{_fmt(r['solid_component_mm'])}</td>"
        f"<td class=l>{_texture_cell(r)}</td>"
        f"<td>{_fmt(r['malignancy'], 2)}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _recommendation(rec: dict[str, Any] | None) -> str:
    if not rec:
        return ""
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in rec.get("notes") or [])
    driver = f" Driven by finding {html.escape(str(rec['driver']))}." if rec.get("driver") else ""
    return (
        f"<div class=rec><span class=cat>{html.escape(rec['scheme'])} category {rec['category']}</span>: "
        f"{html.escape(rec['recommendation'].rstrip('.'))}.{driver}{f'<ul>{notes}</ul>' if notes else ''}</div>"
    )


def _truth_table(matches: Sequence[TruthMatch]) -> str:
    """The scan's annotated nodules, each found (by which reported finding) or missed."""
    if not matches:
        return "<p class=muted>No annotated nodule in this scan.</p>"
    head = "<tr><th>x mm</th><th>y mm</th><th>z mm</th><th>diameter mm</th><th class=l>found</th></tr>"
    body = "".join(
        f"<tr><td>{_fmt(m.center_xyz[0])}</td><td>{_fmt(m.center_xyz[1])}</td><td>{_fmt(m.center_xyz[2])}</td>"
        f"<td>{_fmt(m.diameter_mm)}</td>"
        + (f"<td class=l>yes (#{m.finding})</td>" if m.found else "<td class='l error'>missed</td>")
        + "</tr>"
        for m in matches
    )
    return f"<table>{head}{body}</table>"


def _texture_cell(row: dict[str, Any]) -> str:
    """The texture with its probability when a model gave one, e.g. ``part-solid 0.72``."""
    probabilities = row.get("texture_probabilities") or {}
    p = probabilities.get(row["texture"])
    shown = _fmt(row["texture"]) + (f" {p:.2f}" if isinstance(p, float) else "")
    return shown + (" (assumed)" if row.get("texture_assumed") else "")


def _scan_section(scan: dict[str, Any], threshold: float, truth: Sequence[TruthMatch] | None = None) -> str:
    uid = html.escape(scan[LUNA16_ID])
    if scan.get("error"):
        return f"<h2>{uid}</h2><p class=error>Not analysed: {html.escape(scan['error'])}</p>"
    rows = [r for r in scan["findings"] if is_reported(r[LUNA16_PROBABILITY], threshold)]
    parts = [f"<h2 id='{uid}'>{uid}</h2>", _recommendation(scan.get("recommendation"))]
    if truth is not None:
        parts.append(_truth_table(truth))
    hidden = len(scan["findings"]) - len(rows)
    parts.append(
        f"<p class=muted>{len(rows)} finding(s) at probability ≥ {threshold:g}"
        + (f"; {hidden} less likely candidate(s) are in findings.csv" if hidden else "")
        + "</p>"
    )
    if rows:
        parts.append(_findings_table(rows))
    views = []
    for row in rows:
        pics = scan.get("thumbnails", {}).get(str(row["finding"]))
        if not pics:
            continue
        imgs = "".join(
            f"<img src='{html.escape(quote(pics[p]))}' alt='{p} slice through finding {row['finding']}' title='{p}'>"
            for p in VIEWS
            if p in pics
        )
        caption = (
            f"#{row['finding']}: {_fmt(row['diameter_mm'])} mm {html.escape(row['texture'])}, "
            f"p={_fmt(row['probability'], 2)}"
        )
        views.append(f"<figure><div class=thumbs>{imgs}</div><figcaption>{caption}</figcaption></figure>")
    if views:
        parts.append(f"<div class=views>{''.join(views)}</div>")
    return "".join(parts)


def _truth_summary(
    scans: Sequence[dict[str, Any]], truth: Mapping[str, Sequence[TruthMatch]], threshold: float
) -> str:
    """Found / missed over the analysed scans, and the reported findings that hit no annotated nodule."""
    analysed = [s for s in scans if not s.get("error")]
    matches = [m for s in analysed for m in truth.get(s[LUNA16_ID], [])]
    false = sum(unmatched_findings(truth.get(s[LUNA16_ID], []), s["findings"], threshold) for s in analysed)
    found = sum(m.found for m in matches)
    per_scan = f" ({false / len(analysed):.1f} per scan)" if analysed else ""
    return (
        f"<p><b>Against the annotations:</b> {found} of {len(matches)} nodule(s) found at probability ≥ "
        f"{threshold:g}; {false} reported finding(s) hit no annotated nodule{per_scan}.</p>"
    )


def render_report(
    summary: dict[str, Any],
    scans: Sequence[dict[str, Any]],
    threshold: float,
    truth: Mapping[str, Sequence[TruthMatch]] | None = None,
) -> str:
    """The whole report as one HTML page (thumbnails are relative links to PNG files beside it). With
    ``truth`` (series UID -> its annotated nodules matched to the findings), each scan also lists its
    nodules as found or missed, and the header sums them up."""
    components = summary["components"]
    classifiers = ", ".join(c["name"] for c in components["classifiers"]) or "none"
    timings = "".join(
        f"<tr><td class=l>{html.escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in summary["timings_s"].items()
    )
    failed = sum(1 for s in scans if s.get("error"))
    header = (
        f"<h1>lungtk report</h1><p>{len(scans)} scan(s){f', {failed} not analysed' if failed else ''}. "
        f"Detector <b>{html.escape(components['detector']['name'])}</b>, segmenter "
        f"<b>{html.escape(components['segmenter']['name'])}</b>, classifier(s) <b>{html.escape(classifiers)}</b>"
        f" on {html.escape(summary['device'])}; lungtk-pipeline {html.escape(summary['lungtk_pipeline'])}.</p>"
        f"<details><summary>Seconds per stage</summary><table>{timings}</table></details>"
    )
    if truth is not None:
        header += _truth_summary(scans, truth, threshold)
    body = "".join(
        _scan_section(s, threshold, None if truth is None else truth.get(s[LUNA16_ID], [])) for s in scans
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>lungtk report</title><style>{_STYLE}</style></head><body>{header}{body}"
        "<p class=muted>Slices in the lung window (level −600, width 1500); red: the finding's mask. "
        f"Uncertainty: the segmenter's entropy over flipped copies (black sure, white {MAX_ENTROPY:.2f} nats), "
        "mask in blue. "
        "Coronal and sagittal views have the head at the top. Research software, not a medical device."
        "</p></body></html>\n"
    )


def write_thumbnails(ct: Volume, finding: Finding, folder: Path, stem: str) -> dict[str, str]:
    """PNG files ``<folder>/<stem>-<plane>.png``; returns plane -> file name."""
    written = {}
    for plane, image in finding_views(ct, finding).items():
        path = write_png(folder / f"{stem}-{plane}.png", image)
        written[plane] = path.name
    return written
