"""Named compositions of components: what ``lungtk pipeline run --preset NAME`` and the demo run.

A preset names a detector, a segmenter and classifiers by their registered names; an explicit
``--detector``, ``--segmenter`` or ``--classifier`` replaces that part of it. The README's accuracy
table compares them on phantoms never used for training.
"""

from __future__ import annotations

from dataclasses import dataclass

from lungtk.core import LungtkError


@dataclass(frozen=True)
class Preset:
    name: str
    detector: str
    segmenter: str
    classifiers: tuple[str, ...]
    summary: str

    def composition(self) -> str:
        return f"{self.detector} -> {self.segmenter} -> {', '.join(self.classifiers)}"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "learned",
            "nodulenet",
            "resunet",
            ("malignancy-cnn",),
            "the learned models with shipped weights (the default)",
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
