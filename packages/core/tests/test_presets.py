"""Presets: each names registered-looking parts, and its report threshold applies to its own detector's
scores only."""

import pytest

from lungtk.core import LungtkError
from lungtk.core.presets import DEFAULT_PRESET, DEFAULT_THRESHOLD, PRESETS, Preset, get_preset


def test_every_preset_is_complete_and_the_default_exists():
    assert DEFAULT_PRESET in PRESETS
    for name, preset in PRESETS.items():
        assert preset.name == name and preset.detector and preset.segmenter and preset.classifiers
        assert 0.0 < preset.threshold < 1.0


def test_a_presets_threshold_is_for_its_own_detector_only():
    preset = Preset("p", "det-a", "seg", ("cls",), "test", threshold=0.8)
    assert preset.report_threshold() == 0.8
    assert preset.report_threshold("det-a") == 0.8  # named explicitly: still its own detector
    assert preset.report_threshold("det-b") == DEFAULT_THRESHOLD  # another detector's score scale
    assert preset.report_threshold(None, given_candidates=True) == DEFAULT_THRESHOLD


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(LungtkError, match="unknown preset 'nope'") as caught:
        get_preset("nope")
    assert all(name in str(caught.value.advice) for name in PRESETS)
