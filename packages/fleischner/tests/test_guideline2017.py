"""Every cell of the 2017 Fleischner table (MacMahon et al., Radiology 2017; Table 1), both risk levels."""

import pytest

from lungtk.fleischner import Nodule, Patient, Texture, recommend

S, PS, GG = Texture.SOLID, Texture.PART_SOLID, Texture.GROUND_GLASS

# (texture, multiple, mean diameter mm, risk) -> (LNDb category, words the published cell uses)
TABLE = [
    # Solid, single
    (S, False, 4, "low", 0, "No routine follow-up"),
    (S, False, 4, "high", 0, "Optional CT at 12 months"),
    (S, False, 7, "low", 1, "CT at 6-12 months, then consider CT at 18-24 months"),
    (S, False, 7, "high", 1, "CT at 6-12 months, then CT at 18-24 months"),
    (S, False, 12, "low", 3, "Consider CT at 3 months, PET/CT, or tissue sampling"),
    (S, False, 12, "high", 3, "Consider CT at 3 months, PET/CT, or tissue sampling"),
    # Solid, multiple
    (S, True, 4, "low", 0, "No routine follow-up"),
    (S, True, 4, "high", 0, "Optional CT at 12 months"),
    (S, True, 7, "low", 2, "CT at 3-6 months, then consider CT at 18-24 months"),
    (S, True, 7, "high", 2, "CT at 3-6 months, then at 18-24 months"),
    (S, True, 12, "low", 2, "CT at 3-6 months, then consider CT at 18-24 months"),
    (S, True, 12, "high", 2, "CT at 3-6 months, then at 18-24 months"),
    # Subsolid, single ground glass (no risk split)
    (GG, False, 4, "low", 0, "No routine follow-up"),
    (GG, False, 4, "high", 0, "No routine follow-up"),
    (GG, False, 7, "low", 1, "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years"),
    (
        GG,
        False,
        15,
        "high",
        1,
        "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years",
    ),
    # Subsolid, single part solid
    (PS, False, 4, "low", 0, "No routine follow-up"),
    (PS, False, 4, "high", 0, "No routine follow-up"),
    (PS, False, 7, "low", 2, "CT at 3-6 months to confirm persistence. If unchanged and solid component"),
    (PS, False, 15, "high", 2, "annual CT should be performed for 5 years"),
    # Subsolid, multiple
    (GG, True, 4, "low", 2, "CT at 3-6 months. If stable, consider CT at 2 and 4 years"),
    (PS, True, 4, "high", 2, "CT at 3-6 months. If stable, consider CT at 2 and 4 years"),
    (GG, True, 7, "low", 2, "CT at 3-6 months. Subsequent management based on the most suspicious"),
    (PS, True, 15, "high", 2, "CT at 3-6 months. Subsequent management based on the most suspicious"),
]


@pytest.mark.parametrize(("texture", "multiple", "diameter", "risk", "category", "words"), TABLE)
def test_table_cell(texture, multiple, diameter, risk, category, words):
    nodules = [Nodule(texture, diameter_mm=diameter, id="a")]
    if multiple:  # a second nodule of the same kind and size: the row for multiple nodules
        nodules.append(Nodule(texture, diameter_mm=diameter, id="b"))
    result = recommend(nodules, risk)
    assert result.category == category
    assert words in result.recommendation
    assert result.nodules == len(nodules) and result.driver == "a" and result.risk == risk


@pytest.mark.parametrize(
    ("diameter", "category"),
    [(5.49, 0), (5.5, 1), (6.0, 1), (8.0, 1), (8.49, 1), (8.5, 3), (30.0, 3), (0.0, 0)],
)
def test_mean_diameter_is_rounded_to_the_nearest_mm(diameter, category):
    assert recommend([Nodule(S, diameter_mm=diameter)], "low").category == category


@pytest.mark.parametrize(("volume", "category"), [(99.9, 0), (100.0, 1), (250.0, 1), (250.1, 3)])
def test_volume_thresholds_when_no_diameter(volume, category):
    assert recommend([Nodule(S, volume_mm3=volume)], "high").category == category


def test_diameter_wins_over_volume_when_both_are_given():
    assert recommend([Nodule(S, diameter_mm=4.0, volume_mm3=400.0)]).category == 0


def test_subsolid_size_threshold_is_6mm_or_100mm3():
    assert recommend([Nodule(GG, diameter_mm=5.4)]).category == 0
    assert recommend([Nodule(GG, volume_mm3=100.0)]).category == 1
    assert recommend([Nodule(PS, volume_mm3=99.0)]).category == 0


def test_part_solid_with_a_solid_component_of_6mm_is_highly_suspicious():
    assert recommend([Nodule(PS, diameter_mm=12, solid_component_mm=5.9)]).category == 2
    result = recommend([Nodule(PS, diameter_mm=12, solid_component_mm=6.0)])
    assert result.category == 3 and "highly suspicious" in result.recommendation
    several = [Nodule(GG, diameter_mm=4, id="g"), Nodule(PS, diameter_mm=14, solid_component_mm=8, id="p")]
    assert (recommend(several).category, recommend(several).driver) == (3, "p")


def test_the_most_suspicious_nodule_drives_a_mixed_set():
    nodules = [
        Nodule(S, diameter_mm=4, id="small-solid"),
        Nodule(GG, diameter_mm=9, id="ggn"),
        Nodule(S, diameter_mm=10, id="big-solid"),
    ]
    result = recommend(nodules, "low")
    # Every nodule is read as one of several: solid 10 mm -> 2, ground glass 9 mm -> 2, solid 4 mm -> 0;
    # the tie between the two category-2 nodules goes to the larger one.
    assert (result.category, result.driver) == (2, "big-solid")
    assert "then consider CT at 18-24 months" in result.recommendation


def test_calcified_nodules_are_left_out():
    calcified = Nodule(S, diameter_mm=20, calcified=True, id="granuloma")
    result = recommend([calcified, Nodule(S, diameter_mm=7, id="n")], "low")
    assert (result.category, result.driver, result.nodules) == (1, "n", 1)  # single, not multiple
    assert any("calcified" in note for note in result.notes)
    alone = recommend([calcified])
    assert alone.category == 0 and alone.driver is None and "No nodule" in alone.recommendation


def test_notes_where_the_guideline_does_not_apply():
    nodule = [Nodule(S, diameter_mm=7)]
    assert recommend(nodule, patient=Patient(age=50)).notes == []
    notes = recommend(
        nodule, patient=Patient(age=30, known_cancer=True, immunocompromised=True, screening=True)
    ).notes
    assert len(notes) == 4
    assert any("35" in n for n in notes) and any("Lung-RADS" in n for n in notes)
    assert any("cancer" in n for n in notes) and any("immunocompromised" in n for n in notes)
