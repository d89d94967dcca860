"""Every branch of the LNDb scoring rules, the texture and volume bins, and the probabilistic form."""

import itertools

import numpy as np
import pytest

from lungtk.fleischner import Nodule, Texture, UncertainFinding, parse_texture, probabilities, score
from lungtk.fleischner.lndb_score import SIZES, TEXTURES, score_classes

S, PS, GG = Texture.SOLID, Texture.PART_SOLID, Texture.GROUND_GLASS
SMALL, MEDIUM, LARGE = 50.0, 150.0, 400.0  # mm3


def n(texture, volume):
    return Nodule(texture, volume_mm3=volume)


@pytest.mark.parametrize(
    ("nodules", "category"),
    [
        # one nodule
        ([n(S, SMALL)], 0),
        ([n(PS, SMALL)], 0),
        ([n(GG, SMALL)], 0),
        ([n(PS, MEDIUM)], 2),
        ([n(PS, LARGE)], 2),
        ([n(GG, MEDIUM)], 1),
        ([n(GG, LARGE)], 1),
        ([n(S, MEDIUM)], 1),
        ([n(S, LARGE)], 3),
        # several, all non-solid
        ([n(GG, SMALL), n(GG, SMALL)], 2),
        ([n(GG, SMALL), n(PS, LARGE)], 2),
        # several, all solid
        ([n(S, SMALL), n(S, SMALL), n(S, SMALL)], 0),
        ([n(S, SMALL), n(S, LARGE)], 3),
        ([n(S, MEDIUM), n(S, SMALL)], 2),
        ([n(S, MEDIUM), n(S, MEDIUM)], 2),
        # mixed: max of the solid subset's and the non-solid subset's scores
        ([n(S, LARGE), n(GG, SMALL)], 3),  # single solid large 3, single GGO small 0
        ([n(S, SMALL), n(S, SMALL), n(GG, MEDIUM)], 1),  # solids all small 0, single GGO medium 1
        ([n(S, MEDIUM), n(GG, SMALL), n(PS, SMALL)], 2),  # single solid medium 1, several non-solid 2
        ([n(S, SMALL), n(PS, MEDIUM)], 2),  # 0 and single part-solid 2
        ([n(S, SMALL), n(GG, SMALL)], 0),  # 0 and 0
        ([n(S, MEDIUM), n(S, LARGE), n(GG, MEDIUM)], 3),
        ([], 0),
    ],
)
def test_rules(nodules, category):
    assert score(nodules).category == category


@pytest.mark.parametrize(("volume", "category"), [(99.9, 0), (100.0, 1), (249.9, 1), (250.0, 3)])
def test_volume_classes(volume, category):
    assert score([n(S, volume)]).category == category


def test_diameter_only_uses_the_sphere_volume():
    # A 5.76 mm sphere holds 100 mm3; 7.8 mm holds 248.5 mm3, 7.82 mm holds 250.4 mm3.
    assert score([Nodule(S, diameter_mm=5.75)]).category == 0
    assert score([Nodule(S, diameter_mm=5.77)]).category == 1
    assert score([Nodule(S, diameter_mm=7.8)]).category == 1
    assert score([Nodule(S, diameter_mm=7.82)]).category == 3


@pytest.mark.parametrize(
    ("rating", "texture"),
    [(1, GG), (2.33, GG), (7 / 3, PS), (3, PS), (11 / 3, PS), (3.67, S), (5, S)],
)
def test_texture_rating_bins(rating, texture):
    assert parse_texture(rating) is texture
    assert parse_texture(str(rating)) is texture


def test_texture_words_and_bad_values():
    assert parse_texture("GGO") is GG and parse_texture("Part-Solid") is PS and parse_texture(" solid ") is S
    for bad in ("glassy", "0", "6"):
        with pytest.raises(ValueError, match="texture"):
            parse_texture(bad)


def brute_force(findings):
    """Enumerate every outcome (absent, or one of 9 volume-texture classes per finding)."""
    result = np.zeros(4)
    options = [None, *itertools.product(range(3), range(3))]
    for outcome in itertools.product(options, repeat=len(findings)):
        p = 1.0
        pairs = []
        for f, o in zip(findings, outcome, strict=True):
            if o is None:
                p *= 1 - f.nodule
            else:
                p *= f.nodule * f.size[o[0]] * f.texture[o[1]]
                pairs.append((SIZES[o[0]], TEXTURES[o[1]]))
        result[score_classes(pairs)] += p
    return result


def test_probabilities_match_brute_force_enumeration():
    rng = np.random.default_rng(0)
    for trial in range(6):
        findings = [
            UncertainFinding(
                float(rng.random()), tuple(rng.dirichlet(np.ones(3))), tuple(rng.dirichlet(np.ones(3)))
            )
            for _ in range(1 + trial % 4)
        ]
        p = probabilities(findings)
        np.testing.assert_allclose(p, brute_force(findings), atol=1e-12)
        assert p.sum() == pytest.approx(1.0)


def test_certain_findings_give_the_deterministic_score():
    rng = np.random.default_rng(1)
    for _ in range(30):
        nodules = [
            Nodule(TEXTURES[rng.integers(3)], volume_mm3=float(rng.choice([SMALL, MEDIUM, LARGE])))
            for _ in range(rng.integers(0, 6))
        ]
        p = probabilities([UncertainFinding.certain(x) for x in nodules])
        assert p[score(nodules).category] == pytest.approx(1.0)
