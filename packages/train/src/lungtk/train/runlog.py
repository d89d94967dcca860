"""The run folder's record: ``metrics.jsonl`` (one JSON object per line: training lines with ``loss``,
validation lines with ``val``) and ``curves.png`` (training loss and the validation metric by step)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lungtk.core import write_bytes, write_text


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def truncate(self, step: int) -> None:
        """Keep the lines of steps up to ``step`` (a resumed run rewrites what came after)."""
        if not self.enabled:
            return
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(_finite(record), sort_keys=True) + "\n")
            fh.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return rows


def plot_curves(metrics_path: Path, out: Path, monitor: str) -> Path | None:
    """``curves.png``: training loss (left axis, log scale) and validation ``monitor`` (right axis)."""
    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val"].get(monitor)) for r in rows if isinstance(r.get("val"), dict)]
    val = [(s, v) for s, v in val if v is not None]
    if not train and not val:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(*zip(*train, strict=True), color="tab:blue", label="training loss")
        if all(v > 0 for _, v in train):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val, strict=True), color="tab:red", marker="o", label=f"validation {monitor}")
        ax2.set_ylabel(f"validation {monitor}", color="tab:red")
    ax.set_title(metrics_path.parent.name)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_bytes(out, buffer.getvalue())
