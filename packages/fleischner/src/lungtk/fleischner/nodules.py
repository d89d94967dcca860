"""A nodule as the guidelines see it: texture, size (mean diameter or volume), solid component, calcification.

Textures are words (solid, part-solid, ground-glass, with common aliases) or the readers' mean 1-5 texture
rating (LIDC / LNDb), binned as the LNDb challenge does: below 7/3 ground-glass, 7/3 to 11/3 part-solid,
above 11/3 solid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from lungtk.core import LungtkError, equivalent_diameter, labels


class Texture(StrEnum):
    """The texture labels of ``lungtk.core.labels`` (the names classifiers give and tables hold)."""

    GROUND_GLASS = labels.GROUND_GLASS
    PART_SOLID = labels.PART_SOLID
    SOLID = labels.SOLID

    @property
    def subsolid(self) -> bool:
        return self is not Texture.SOLID


class Size(StrEnum):
    SMALL = "small"  # < 6 mm, < 100 mm3
    MEDIUM = "medium"  # 6-8 mm, 100-250 mm3
    LARGE = "large"  # > 8 mm, > 250 mm3 (LNDb: >= 250 mm3)


TEXTURE_WORDS = {
    **{texture.value: texture for texture in Texture},
    "partsolid": Texture.PART_SOLID,
    "part_solid": Texture.PART_SOLID,
    "part solid": Texture.PART_SOLID,
    "mixed": Texture.PART_SOLID,
    "semi-solid": Texture.PART_SOLID,
    "ground_glass": Texture.GROUND_GLASS,
    "ground glass": Texture.GROUND_GLASS,
    "groundglass": Texture.GROUND_GLASS,
    "ggo": Texture.GROUND_GLASS,
    "ggn": Texture.GROUND_GLASS,
    "non-solid": Texture.GROUND_GLASS,
    "nonsolid": Texture.GROUND_GLASS,
}


def texture_from_rating(rating: float) -> Texture:
    """The LNDb binning of a mean 1-5 texture rating (:func:`lungtk.core.labels.texture_of_rating`)."""
    return Texture(labels.texture_of_rating(rating))


def parse_texture(text: str | float | Texture) -> Texture:
    """A texture word, alias or 1-5 rating; ValueError with the accepted words otherwise."""
    if isinstance(text, Texture):
        return text
    if isinstance(text, bool):
        raise ValueError(f"unknown texture {text!r}; use {', '.join(labels.TEXTURES[::-1])} or a 1-5 rating")
    if isinstance(text, int | float):
        return texture_from_rating(float(text))
    word = text.strip().lower()
    if word in TEXTURE_WORDS:
        return TEXTURE_WORDS[word]
    try:
        return texture_from_rating(float(word))
    except ValueError:
        pass
    raise ValueError(f"unknown texture {text!r}; use {', '.join(labels.TEXTURES[::-1])} or a 1-5 rating")


def sphere_volume(diameter_mm: float) -> float:
    return math.pi * diameter_mm**3 / 6.0


def round_mm(diameter_mm: float) -> int:
    """Round to the nearest millimetre, halves up (5.5 mm counts as 6 mm), as the guideline measures."""
    return math.floor(diameter_mm + 0.5)


@dataclass(frozen=True)
class Nodule:
    """One nodule. ``diameter_mm`` is the mean of the long and short axes; give it, the volume, or both."""

    texture: Texture
    diameter_mm: float | None = None
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    calcified: bool = False
    probability: float | None = None
    id: str = ""

    def __post_init__(self) -> None:
        if self.diameter_mm is None and self.volume_mm3 is None:
            raise LungtkError(f"nodule {self.id or '?'}: needs a diameter or a volume")
        for name in ("diameter_mm", "volume_mm3", "solid_component_mm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise LungtkError(
                    f"nodule {self.id or '?'}: {name} must be a non-negative number, got {value}"
                )
        solid = self.solid_component_mm
        if (
            solid is not None
            and self.diameter_mm is not None
            and round_mm(solid) > round_mm(self.diameter_mm)
        ):
            raise LungtkError(
                f"nodule {self.id or '?'}: its solid component ({solid:g} mm) is larger than the nodule "
                f"({self.diameter_mm:g} mm)"
            )
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise LungtkError(
                f"nodule {self.id or '?'}: probability must lie in 0..1, got {self.probability}"
            )

    def size_2017(self) -> Size:
        """Fleischner 2017 size class: by the rounded mean diameter when known, else by volume."""
        if self.diameter_mm is not None:
            d = round_mm(self.diameter_mm)
            return Size.SMALL if d < 6 else Size.MEDIUM if d <= 8 else Size.LARGE
        assert self.volume_mm3 is not None
        v = self.volume_mm3
        return Size.SMALL if v < 100 else Size.MEDIUM if v <= 250 else Size.LARGE

    @property
    def volume_or_sphere(self) -> float:
        """The volume, or the volume of a sphere of the diameter."""
        if self.volume_mm3 is not None:
            return self.volume_mm3
        assert self.diameter_mm is not None
        return sphere_volume(self.diameter_mm)

    def size_lndb(self) -> Size:
        """LNDb volume class: < 100, 100 to < 250, >= 250 mm3."""
        v = self.volume_or_sphere
        return Size.SMALL if v < 100 else Size.MEDIUM if v < 250 else Size.LARGE

    @property
    def extent_mm(self) -> float:
        """A size to compare nodules by: the diameter, else the equivalent diameter of the volume."""
        if self.diameter_mm is not None:
            return self.diameter_mm
        return equivalent_diameter(self.volume_or_sphere)
