"""Texture helpers of `tiles.textures`: the texels a mesh samples, and filling the ones it does not."""

from __future__ import annotations

import numpy as np

from tiles.textures import fill_unsampled, triangle_mask


def test_triangle_mask_covers_each_triangle_and_its_margin_only():
    uv = np.array([[0.1, 0.1], [0.5, 0.1], [0.1, 0.5]])
    inner = triangle_mask(uv, np.array([[0, 1, 2]]), (100, 200), margin=0)
    grown = triangle_mask(uv, np.array([[0, 1, 2]]), (100, 200), margin=2)
    assert inner.shape == (100, 200)
    rows, cols = np.nonzero(inner)
    # u spans 0.1-0.5 of 200 columns, v 0.1-0.5 of 100 rows (v down, the image's top row at v = 0)
    assert cols.min() >= 19 and cols.max() <= 101 and rows.min() >= 9 and rows.max() <= 51
    # about half the 80 x 40 texel box: the triangle's area
    assert 0.45 < inner.sum() / (80 * 40) < 0.6
    assert inner[30, 30] and not inner[45, 95]  # inside near the right angle; beyond the hypotenuse
    assert (grown >= inner).all() and grown.sum() > inner.sum()
    assert not grown[80, 180] and grown[8, 30] and not inner[8, 30]  # the margin reaches 2 texels out


def test_fill_keeps_every_sampled_texel_and_fills_the_rest_from_them():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    keep = np.zeros((64, 96), bool)
    keep[10:20, 10:30] = True
    pixels[keep] = (200, 40, 10)  # the kept texels: one roof colour
    keep[40:50, 60:70] = True
    pixels[40:50, 60:70] = (20, 90, 220)  # a second roof
    out = fill_unsampled(pixels, keep)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert np.array_equal(out[keep], pixels[keep])
    filled = out[~keep].astype(int)
    # every filled texel is a blend of the two kept colours (not the noise that was there): inside their box
    lo, hi = np.minimum([200, 40, 10], [20, 90, 220]), np.maximum([200, 40, 10], [20, 90, 220])
    assert (filled >= lo - 1).all() and (filled <= hi + 1).all()
    # next to a roof the fill takes that roof's colour
    assert np.abs(out[21, 15].astype(int) - (200, 40, 10)).max() <= 2
    assert np.abs(out[51, 65].astype(int) - (20, 90, 220)).max() <= 2


def test_fill_leaves_an_image_alone_when_all_or_nothing_is_kept():
    pixels = np.random.default_rng(4).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(fill_unsampled(pixels, np.ones((8, 8), bool)), pixels)
    assert np.array_equal(fill_unsampled(pixels, np.zeros((8, 8), bool)), pixels)
