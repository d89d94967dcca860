"""lungtk-cls's components and training tasks, registered through the ``lungtk`` entry-point group like
any plugin. Nothing heavy is imported here: factories are import paths, settings plain values."""

from __future__ import annotations

from typing import Any

from lungtk.core import hookimpl

WEIGHTS = "lungtk.cls:weights/{}.safetensors"


@hookimpl
def lungtk_register_classifiers(registry: Any) -> None:
    registry.add(
        "size",
        "lungtk.cls.size:SizeClassifier.from_options",
        summary="Classical: malignancy from diameter (fitted on LIDC), texture from density (no weights).",
        cpu_only=True,
        takes_weights=False,
        settings={"min_solid_part_mm": 2.0, "solid_above": 0.5},
    )
    for name, what in (
        ("nodule-cnn", "Seed 001: nodule vs non-nodule (false-positive reduction) on a 32x48x48 crop."),
        ("malignancy-cnn", "Seed 001: benign vs malignant on a 32x48x48 crop."),
        ("texture-cnn", "Ground-glass / part-solid / solid (seed 000's classes) on a 32x48x48 crop."),
        (
            "ggn-pathology",
            "Seed 004: AAH+AIS / MIA / IAC of ground-glass and part-solid nodules (masked cascade).",
        ),
    ):
        registry.add(
            name,
            f"lungtk.cls.learned:{name.replace('-', '_')}",
            summary=what,
            default_weights=WEIGHTS.format(name),
        )


@hookimpl
def lungtk_register_tasks(registry: Any) -> None:
    from lungtk.cls.tasks import GGN_PATHOLOGY, MALIGNANCY_CNN, NODULE_CNN, TEXTURE_CNN

    registry.add(
        "nodule-cnn",
        "lungtk.cls.tasks:nodule_cnn",
        summary="Seed 001 nodule classifier.",
        settings=NODULE_CNN,
    )
    registry.add(
        "malignancy-cnn",
        "lungtk.cls.tasks:malignancy_cnn",
        summary="Seed 001 malignancy classifier.",
        settings=MALIGNANCY_CNN,
    )
    registry.add(
        "texture-cnn",
        "lungtk.cls.tasks:texture_cnn",
        summary="Texture classifier (seed 000 classes).",
        settings=TEXTURE_CNN,
    )
    registry.add(
        "ggn-pathology",
        "lungtk.cls.tasks:ggn_pathology",
        summary="Seed 004 GGN pathology: dilated-unet mask cascade, frozen or joint.",
        settings=GGN_PATHOLOGY,
    )
