"""The LNDb challenge's follow-up scoring (Pedrosa et al., LNDb challenge, 2019), deterministic and
probabilistic.

Volume classes < 100, 100 to < 250 and >= 250 mm3; textures ground-glass, part-solid, solid.

- One nodule: small -> 0; part-solid -> 2; ground-glass -> 1; solid medium -> 1; solid large -> 3.
- Several, all non-solid -> 2. All solid: all small -> 0, any large -> 3, otherwise 2.
- Mixed: the higher of the solid subset's and the non-solid subset's scores, each by these rules.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lungtk.core.labels import TEXTURES as TEXTURE_NAMES
from lungtk.fleischner.nodules import Nodule, Size, Texture
from lungtk.fleischner.result import CATEGORIES, Recommendation

SCHEME = "lndb"
SIZES = (Size.SMALL, Size.MEDIUM, Size.LARGE)
TEXTURES = tuple(Texture(name) for name in TEXTURE_NAMES)  # ground-glass, part-solid, solid


def _score_single(size: Size, texture: Texture) -> int:
    if size is Size.SMALL:
        return 0
    if texture is Texture.PART_SOLID:
        return 2
    if texture is Texture.GROUND_GLASS:
        return 1
    return 1 if size is Size.MEDIUM else 3


def _score_group(pairs: Sequence[tuple[Size, Texture]]) -> int:
    """Score a set of nodules that are all solid or all non-solid (or any single nodule)."""
    if not pairs:
        return 0
    if len(pairs) == 1:
        return _score_single(*pairs[0])
    if all(t.subsolid for _, t in pairs):
        return 2
    sizes = [s for s, _ in pairs]
    if all(s is Size.SMALL for s in sizes):
        return 0
    return 3 if Size.LARGE in sizes else 2


def score_classes(pairs: Sequence[tuple[Size, Texture]]) -> int:
    """The LNDb score of a patient's nodules given as (volume class, texture) pairs."""
    solid = [p for p in pairs if p[1] is Texture.SOLID]
    subsolid = [p for p in pairs if p[1].subsolid]
    if solid and subsolid:
        return max(_score_group(solid), _score_group(subsolid))
    return _score_group(pairs)


def score(nodules: Sequence[Nodule], *, patient_id: str = "") -> Recommendation:
    """The LNDb score of one patient's (non-calcified) nodules, with the nodule that sets it."""
    counted = [n for n in nodules if not n.calcified]
    category = score_classes([(n.size_lndb(), n.texture) for n in counted])
    driver = None
    if counted:
        # The nodule that scores highest on its own; ties go to the larger one.
        alone = [score_classes([(n.size_lndb(), n.texture)]) for n in counted]
        best = max(range(len(counted)), key=lambda i: (alone[i], counted[i].extent_mm, -i))
        driver = counted[best].id or str(best + 1)
    left_out = len(nodules) - len(counted)
    notes = [f"{left_out} calcified (benign) nodule(s) left out."] if left_out else []
    return Recommendation(
        patient_id, SCHEME, category, CATEGORIES[category], driver, len(counted), None, notes
    )


@dataclass(frozen=True)
class UncertainFinding:
    """A finding with probabilities: that it is a nodule, of each volume class (small, medium, large) and
    of each texture (ground-glass, part-solid, solid)."""

    nodule: float
    size: tuple[float, float, float]
    texture: tuple[float, float, float]

    @classmethod
    def certain(cls, nodule: Nodule, probability: float = 1.0) -> UncertainFinding:
        size = tuple(float(nodule.size_lndb() is s) for s in SIZES)
        texture = tuple(float(nodule.texture is t) for t in TEXTURES)
        return cls(probability, size, texture)  # type: ignore[arg-type]


# The score depends on the nodules only through this summary, so probabilities propagate over a few
# hundred states instead of 10**n outcomes: per group (solid, non-solid) the count capped at 2, and the
# classes seen; a lone nodule's classes are then exactly its own.
_State = tuple[int, frozenset[Size], int, frozenset[tuple[Size, Texture]]]
_EMPTY: _State = (0, frozenset(), 0, frozenset())


def _add(state: _State, size: Size, texture: Texture) -> _State:
    n_solid, solid_sizes, n_sub, sub_pairs = state
    if texture is Texture.SOLID:
        return (min(n_solid + 1, 2), solid_sizes | {size}, n_sub, sub_pairs)
    return (
        n_solid,
        solid_sizes,
        min(n_sub + 1, 2),
        sub_pairs | {(size, texture)} if n_sub == 0 else frozenset(),
    )


def _state_score(state: _State) -> int:
    n_solid, solid_sizes, n_sub, sub_pairs = state
    solid_score = 0
    if n_solid == 1:
        solid_score = _score_single(next(iter(solid_sizes)), Texture.SOLID)
    elif n_solid == 2:
        solid_score = 0 if solid_sizes == {Size.SMALL} else 3 if Size.LARGE in solid_sizes else 2
    sub_score = 0
    if n_sub == 1:
        sub_score = _score_single(*next(iter(sub_pairs)))
    elif n_sub == 2:
        sub_score = 2
    return max(solid_score, sub_score)


def probabilities(findings: Sequence[UncertainFinding]) -> np.ndarray:
    """P(category = 0..3) when each finding is independently a nodule, of a volume class and a texture."""
    states: dict[_State, float] = {_EMPTY: 1.0}
    for f in findings:
        nxt: dict[_State, float] = {}
        for state, p in states.items():
            nxt[state] = nxt.get(state, 0.0) + p * (1.0 - f.nodule)
            for (i, size), (j, texture) in itertools.product(enumerate(SIZES), enumerate(TEXTURES)):
                q = p * f.nodule * f.size[i] * f.texture[j]
                if q > 0:
                    key = _add(state, size, texture)
                    nxt[key] = nxt.get(key, 0.0) + q
        states = nxt
    result = np.zeros(4)
    for state, p in states.items():
        result[_state_score(state)] += p
    return result
