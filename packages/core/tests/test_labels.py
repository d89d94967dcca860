"""The shared vocabulary and rules, checked against LUNA16's published conventions and by hand."""

import numpy as np
import pytest

from lungtk.core import labels


def test_luna16_columns_are_the_published_ones():
    assert labels.SUBMISSION_COLUMNS == ("seriesuid", "coordX", "coordY", "coordZ", "probability")
    assert labels.ANNOTATION_COLUMNS == ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
    assert labels.CANDIDATE_COLUMNS == ("seriesuid", "coordX", "coordY", "coordZ", "class")


def test_every_task_names_its_labels_and_binary_tasks_their_positive_one():
    assert labels.TEXTURES == ("ground-glass", "part-solid", "solid")
    for task, positive in labels.POSITIVE.items():
        assert len(labels.TASK_LABELS[task]) == 2 and labels.TASK_LABELS[task][1] == positive
    assert all(len(set(names)) == len(names) for names in labels.TASK_LABELS.values())


def test_positive_probability_reads_the_positive_label_or_nothing():
    found = {"malignancy": {"benign": 0.3, "malignant": 0.7}, "nodule": {"non-nodule": 1.0}}
    assert labels.positive_probability(found, labels.MALIGNANCY) == 0.7
    assert labels.positive_probability(found, labels.NODULE) is None  # no positive label given
    assert labels.positive_probability({}, labels.MALIGNANCY) is None


def test_air_and_padding_values():
    assert labels.AIR_HU == -1000.0
    assert labels.PAD_HU == -1024 == labels.STORED_HU[0]
    assert np.iinfo(np.int16).min < labels.STORED_HU[0] < labels.STORED_HU[1] < np.iinfo(np.int16).max


def test_is_reported_at_the_threshold_and_above():
    assert labels.is_reported(0.5, 0.5) and labels.is_reported(0.51, 0.5)
    assert not labels.is_reported(0.4999, 0.5)


def test_within_radius_counts_the_boundary_and_nothing_beyond():
    centre = (10.0, -20.0, 30.0)
    assert labels.within_radius((13.0, -16.0, 30.0), centre, 10.0)  # 3-4-5: exactly on the radius
    assert not labels.within_radius((13.0, -16.0, 30.001), centre, 10.0)
    assert not labels.within_radius((10.0, -20.0, 35.5), centre, 10.0)
    assert labels.within_radius(centre, centre, 0.0)


def test_within_radius_matrix_agrees_with_the_single_rule():
    rng = np.random.default_rng(1)
    points = rng.integers(-6, 7, size=(40, 3)).astype(float)
    centres = rng.integers(-6, 7, size=(7, 3)).astype(float)
    diameters = rng.integers(0, 12, size=7).astype(float)
    matrix = labels.within_radius_matrix(points, centres, diameters)
    assert matrix.shape == (40, 7) and matrix.any() and not matrix.all()
    for i, p in enumerate(points):
        for j, c in enumerate(centres):
            assert matrix[i, j] == (np.linalg.norm(p - c) <= diameters[j] / 2)
    assert labels.within_radius_matrix(points, np.zeros((0, 3)), []).shape == (40, 0)
    with pytest.raises(ValueError, match="2 centres but 1 diameters"):
        labels.within_radius_matrix(points, centres[:2], diameters[:1])


@pytest.mark.parametrize(
    ("texture", "solid_mm", "expected"),
    [
        ("ground-glass", 0.0, "AAH+AIS"),
        ("part-solid", 3.0, "MIA"),
        ("part-solid", 5.0, "MIA"),  # 5 mm or less: minimally invasive
        ("part-solid", 5.01, "IAC"),
        ("solid", 12.0, None),
    ],
)
def test_pathology_of_the_solid_component_rule(texture, solid_mm, expected):
    from lungtk.core.labels import pathology_of

    assert pathology_of(texture, solid_mm) == expected
