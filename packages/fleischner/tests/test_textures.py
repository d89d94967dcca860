"""The guideline's textures are the project's texture labels, so a classifier's output parses as is."""

import pytest

from lungtk.core import labels
from lungtk.fleischner import Texture, parse_texture
from lungtk.fleischner.lndb_score import TEXTURES


def test_texture_values_are_the_core_labels_in_their_order():
    assert tuple(t.value for t in Texture) == labels.TEXTURES
    assert tuple(t.value for t in TEXTURES) == labels.TEXTURES  # seed 000's feature order
    assert Texture.SOLID == labels.SOLID and not Texture.SOLID.subsolid


@pytest.mark.parametrize("name", labels.TEXTURES)
def test_each_label_parses_to_its_texture(name):
    assert parse_texture(name) is Texture(name)
    assert parse_texture(name.upper()) is Texture(name)


def test_unknown_texture_lists_the_labels():
    with pytest.raises(ValueError, match="use solid, part-solid, ground-glass or a 1-5 rating"):
        parse_texture("spiky")
