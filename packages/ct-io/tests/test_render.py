"""PNG encoding and slice rendering, decoded by an independent reader (Pillow)."""

import io

import numpy as np
import pytest
from PIL import Image

from lungtk.ct_io.render import outline, overlay, png_bytes, upscale, window, write_png


@pytest.mark.parametrize("shape", [(7, 5), (16, 9, 3)])
def test_png_round_trips_through_pillow(shape, tmp_path):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
    np.testing.assert_array_equal(decoded, image)
    path = write_png(tmp_path / "x.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


def test_window_outline_overlay_upscale():
    assert window(np.array([-2000, -1350, -600, 150, 900])).tolist() == [0, 0, 128, 255, 255]
    mask = np.zeros((5, 5), bool)
    mask[1:4, 1:4] = True
    assert outline(mask).sum() == 8 and not outline(mask)[2, 2]
    rgb = overlay(np.zeros((5, 5), np.uint8), mask)
    assert rgb.shape == (5, 5, 3) and tuple(rgb[1, 1]) == (255, 64, 64) and tuple(rgb[2, 2]) == (0, 0, 0)
    assert upscale(np.arange(6, dtype=np.uint8).reshape(2, 3), 2.0, 1.5).shape == (4, 4)
    with pytest.raises(ValueError, match="PNG needs"):
        png_bytes(np.zeros((2, 2, 4), np.uint8))
