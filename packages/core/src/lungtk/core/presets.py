"""Named compositions of components: what ``lungtk pipeline run --preset NAME`` and the demo run.

A preset names a detector, a segmenter and classifiers by their registered names; an explicit
``--detector``, ``--segmenter`` or ``--classifier`` replaces that part of it. It also names the
probability at which its findings are reported, where its detector's scores call for another than
:data:`DEFAULT_THRESHOLD`. The README's accuracy table compares them on phantoms never used for training.
"""

from __future__ import annotations

from dataclasses import dataclass

from lungtk.core import LungtkError

DEFAULT_THRESHOLD = 0.5
"""Findings at this probability or more are reported, unless a preset or ``--threshold`` says otherwise."""


@dataclass(frozen=True)
class Preset:
    name: str
    detector: str
    segmenter: str
    classifiers: tuple[str, ...]
    summary: str
    threshold: float = DEFAULT_THRESHOLD  # for this preset's own detector's scores

    def composition(self) -> str:
        return f"{self.detector} -> {self.segmenter} -> {', '.join(self.classifiers)}"

    def report_threshold(self, detector: str | None = None, given_candidates: bool = False) -> float:
        """The preset's threshold where its own detector scores the findings; otherwise (another
        ``--detector``, or given locations) :data:`DEFAULT_THRESHOLD`."""
        own = not given_candidates and detector in (None, self.detector)
        return self.threshold if own else DEFAULT_THRESHOLD


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "learned",
            "nodulenet",
            "resunet",
            ("malignancy-cnn",),
            "the learned models with shipped weights (the default)",
            # chosen on the calibration phantoms of seed 8000 (10 scans, 18 nodules), with nodulenet's flip
            # TTA (its default): 17 nodules found and 0.9 false positives per scan at 0.5, 16 and 0.1 at 0.7.
            # One pass (--set nodulenet.tta=false) gives 16 and 6.3 at 0.5: raise --threshold to 0.7 there.
            threshold=0.5,
        ),
        Preset(
            "classical",
            "blob",
            "regiongrow",
            ("size",),
            "no learned model: multi-scale blobs, region growing, size and density rules",
        ),
        Preset(
            "seed001",
            "unet25d",
            "regiongrow",
            ("nodule-cnn", "malignancy-cnn"),
            "seed 001: 2.5D U-Net candidates, then the nodule and malignancy CNNs",
        ),
        Preset(
            "seed003",
            "nodulenet-qam",
            "nodulenet-qam",
            ("size",),
            "seed 003: NoduleNet with Quartet attention, its mask head as the segmenter",
        ),
    )
}
DEFAULT_PRESET = "learned"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise LungtkError(
            f"unknown preset '{name}'", option="--preset", advice=f"choose one of {', '.join(PRESETS)}"
        ) from None
