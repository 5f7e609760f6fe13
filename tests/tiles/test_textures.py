"""Texture helpers of `tiles.textures`: the texels a mesh samples, filling the ones it does not, image quality
against a reference and the lowest WebP quality that matches a floor."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tiles.errors import TilesError
from tiles.textures import (
    WEBP_LADDER,
    fill_unsampled,
    halve_for_bilinear,
    image_quality,
    magnify,
    triangle_mask,
    webp_at_least,
)


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


def _direct_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM by its definition, window by window (7 x 7, sample covariances), for a check of the filtered form."""
    from numpy.lib.stride_tricks import sliding_window_view

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    means = []
    for c in range(a.shape[2]):
        wx = sliding_window_view(a[..., c].astype(np.float64), (7, 7)).reshape(-1, 49)
        wy = sliding_window_view(b[..., c].astype(np.float64), (7, 7)).reshape(-1, 49)
        ux, uy = wx.mean(1), wy.mean(1)
        vx, vy = wx.var(1, ddof=1), wy.var(1, ddof=1)
        vxy = ((wx - ux[:, None]) * (wy - uy[:, None])).sum(1) / 48
        means.append((((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))).mean())
    return float(np.mean(means))


def _photo(h: int = 96, w: int = 128, seed: int = 5) -> np.ndarray:
    """A photo-like image: smooth colour fields plus fine texture."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.random((h, w, 3)) * 255, (6, 6, 0)) * 3 - 250
    return np.clip(smooth + gaussian_filter(rng.normal(0, 25, (h, w, 3)), (0.7, 0.7, 0)), 0, 255).astype(np.uint8)


def test_image_quality_is_psnr_and_the_windowed_ssim():
    a = _photo()
    b = np.clip(a + np.random.default_rng(6).normal(0, 6, a.shape), 0, 255).astype(np.uint8)
    psnr, ssim = image_quality(a, b)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)
    # the filtered form drops a 3-pixel border of window centres, as the direct form does by construction
    assert ssim == pytest.approx(_direct_ssim(a, b), abs=1e-4)
    assert image_quality(a, a) == (float("inf"), pytest.approx(1.0))
    assert image_quality(a, b)[1] < 0.99


def test_image_quality_magnifies_a_smaller_image_as_a_gpu_does():
    a = _photo(64, 64)
    half = a.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    assert magnify(half, (64, 64)).shape == (64, 64, 3)
    psnr, _ = image_quality(a, half)
    assert psnr == pytest.approx(image_quality(a, magnify(half, (64, 64)))[0])
    assert np.array_equal(magnify(a, (64, 64)), a)
    with pytest.raises(TilesError):
        image_quality(a, np.zeros((64, 64, 1), np.uint8))


def test_halving_for_bilinear_beats_the_2x2_mean_once_magnified():
    a = _photo(128, 96)
    mean = a.reshape(64, 2, 48, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    half = halve_for_bilinear(a)
    assert half.shape == (64, 48, 3) and half.dtype == np.uint8
    # what a GPU draws (bilinear magnification) is closer to the full-size image by both measures
    (p_mean, s_mean), (p_half, s_half) = image_quality(a, mean), image_quality(a, half)
    assert p_half > p_mean + 0.5 and s_half > s_mean + 0.01, (p_mean, p_half, s_mean, s_half)
    # the correction is the 2 x 2 mean of what the mean's magnification misses: flat areas keep their value
    flat = np.full((32, 32, 3), (200, 90, 30), np.uint8)
    assert np.array_equal(halve_for_bilinear(flat), flat[:16, :16])


def _encode(pixels: np.ndarray, fmt: str, **kw: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **kw)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_webp_at_least_is_the_lowest_webp_as_good_as_the_floor_by_both_measures():
    reference = _photo(128, 128)
    pixels = reference.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    floor = _encode(pixels, "JPEG", quality=85)
    want = image_quality(reference, _decode(floor))
    image, mime, quality = webp_at_least(pixels, reference, floor)
    assert mime == "image/webp" and quality in WEBP_LADDER
    got = image_quality(reference, _decode(image))
    assert got[0] >= want[0] and got[1] >= want[1]
    assert image == _encode(pixels, "WEBP", quality=quality, method=4)
    i = WEBP_LADDER.index(quality)
    if i > 0:  # the next lower quality of the ladder falls short on one measure (bisection tested it)
        lower = image_quality(reference, _decode(_encode(pixels, "WEBP", quality=WEBP_LADDER[i - 1], method=4)))
        assert lower[0] < want[0] or lower[1] < want[1]


def test_webp_at_least_from_a_start_keeps_a_good_start_and_searches_above_a_bad_one(monkeypatch):
    from PIL import Image

    reference = _photo(128, 128, seed=7)
    pixels = reference.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    floor = _encode(pixels, "JPEG", quality=85)
    want = image_quality(reference, _decode(floor))

    def good(q: int) -> bool:
        got = image_quality(reference, _decode(_encode(pixels, "WEBP", quality=q, method=4)))
        return got[0] >= want[0] and got[1] >= want[1]

    _, _, lowest = webp_at_least(pixels, reference, floor)
    assert lowest is not None and lowest < 90
    encodings: list[int] = []
    save = Image.Image.save

    def counted(self, fp, format=None, **params):  # noqa: A002 - PIL's own parameter name
        if format == "WEBP":
            encodings.append(params["quality"])
        return save(self, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", counted)
    start = next(q for q in range(lowest + 4, 96) if good(q))
    encodings.clear()
    image, mime, quality = webp_at_least(pixels, reference, floor, start=start)
    assert (quality, encodings) == (start, [start])  # one encoding, kept: no search below it
    assert image == _encode(pixels, "WEBP", quality=start, method=4)
    # from too low a start: 2, 4, 8 ... above it until one is good, then the lowest good one inside that step
    encodings.clear()
    _, _, quality = webp_at_least(pixels, reference, floor, start=20)
    assert quality is not None and quality > 20 and good(quality) and encodings[0] == 20
    tried = sorted(set(encodings))
    assert all(not good(q) for q in tried if q < quality)


def test_webp_at_least_keeps_the_floor_when_no_webp_matches_it():
    pixels = _photo(64, 64)
    floor = _encode(pixels, "PNG")  # lossless: no lossy WebP reaches an infinite PSNR
    image, mime, quality = webp_at_least(pixels, pixels, floor)
    assert (image, mime, quality) == (floor, "image/png", None)
    assert webp_at_least(pixels, pixels, floor, start=60) == (floor, "image/png", None)
