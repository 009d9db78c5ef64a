"""Strokes -> anti-aliased grayscale images (dark ink on white, as images.py stores them).

Two normalizations, the two rows of the paper's Table 2:

* ``height128``: the whole expression is scaled so that the image is 128 px high
  (the GAN's input height), aspect ratio kept. A tall fraction and a flat ``a+b``
  get the same height, so symbol sizes vary a lot between images.
* ``symbol``: the expression is scaled so that its symbols are as high as the
  symbols of a formula that KaTeX renders at a reference font size; image sizes
  then vary with the layout, like the renderings they are paired with.

Constants (and why):

* ``REFERENCE_FONT_PX = 32``: the middle of the renderer's default font-size range
  (16-50 px), and the size the sample schema's example uses.
* ``SYMBOL_EM = 0.52``: the handwritten symbol height (median trace-group box)
  is mapped to 0.52 em, i.e. 16.6 px at the reference size. Calibrated, not
  guessed: 400 random CROHME training formulas were rendered by katex_render
  (display mode, 32 px, ``\\mathnormal`` and ``\\mathrm``) and rasterized here; the
  median, over formulas, of the ratio of median connected-component heights
  (rendered / handwritten) was 0.81 with the first estimate (0.644 em: the median
  glyph height+depth from KaTeX's font metrics over CROHME's symbol mix, which
  ignores that scripts are drawn at 70%), and 0.94 (``\\mathnormal``) to 1.00
  (``\\mathrm``) with 0.52.
* ``FLAT_SYMBOLS``: symbols whose box height says nothing about the writing size
  (``-``, ``=``, dots, arrows...), left out of the median on both sides.
* ``STROKE_P75_TO_SYMBOL = 0.97``: files without trace groups fall back to the
  75th percentile of per-stroke heights; over every CROHME training source
  (HAMEX, KAIST, MathBrush, MfrDB, expressmatch, extension) the median ratio of
  symbol height to that statistic is 0.93-1.00 (0.97 overall).
* Pen widths (``DEFAULT_PEN_WIDTH``): KaTeX's Computer Modern stems are about
  0.07 em, 2.2 px at the reference size: 2.5 px for ``symbol``. At height 128 a
  typical expression (2-4 symbol heights tall) has 30-60 px symbols, and 3 px
  keeps strokes visible after the GAN's down-sampling without blotting small
  symbols.
* ``padding = 8`` px of white around the ink in both modes (rendered formulas get
  0-15 px, see katex_render.styles).
* ``SUPERSAMPLE = 4``: strokes are drawn 4x larger and box-filtered down, which
  gives 17 grey levels of anti-aliasing at a few milliseconds per image.
* ``MAX_ASPECT = 16`` (height128 only): a flat expression (``-``, ``\\ldots``) is
  not blown up to 128 px of height; the scale is limited so that the content is at
  most 16 times wider than high, then centered vertically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw

from formula_gan.data.inkml import Ink, InkmlError, group_boxes

Normalization = Literal["height128", "symbol"]
NORMALIZATIONS = ("height128", "symbol")
REFERENCE_FONT_PX = 32
SYMBOL_EM = 0.52
SYMBOL_HEIGHT_PX = SYMBOL_EM * REFERENCE_FONT_PX  # 16.6 px
STROKE_P75_TO_SYMBOL = 0.97
FLAT_SYMBOLS = frozenset(
    {"-", ".", ",", "=", "\\cdot", "\\ldots", "\\cdots", "\\dots", "\\prime", "'", "\\to", "\\rightarrow", "\\sim", "\\times"}
)
DEFAULT_PEN_WIDTH = {"height128": 3.0, "symbol": 2.5}
HEIGHT = 128
SUPERSAMPLE = 4
MAX_ASPECT = 16.0
# Refuse images no model here could use (the loader caps width at 512 at height 128).
MAX_SIDE_PX = 8192


@dataclass(frozen=True)
class RasterConfig:
    normalize: Normalization = "height128"
    pen_width: float | None = None  # px in the output image; None = DEFAULT_PEN_WIDTH[normalize]
    padding: int = 8  # px of white on each side
    supersample: int = SUPERSAMPLE

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.pen_width is not None and not self.pen_width > 0:
            raise ValueError(f"pen_width must be positive, got {self.pen_width}")
        if self.padding < 0 or self.supersample < 1:
            raise ValueError("padding must be >= 0 and supersample >= 1")

    @property
    def pen(self) -> float:
        return self.pen_width if self.pen_width is not None else DEFAULT_PEN_WIDTH[self.normalize]


def symbol_height(ink: Ink) -> tuple[float, str]:
    """Estimated symbol height in ink units, and how it was estimated ("groups" | "strokes")."""
    heights = [h for label, _, h in group_boxes(ink) if label not in FLAT_SYMBOLS and h > 0]
    if heights:
        return float(np.median(heights)), "groups"
    stroke_h = [float(np.ptp(s[:, 1])) for s in ink.strokes]
    stat = float(np.percentile(stroke_h, 75)) * STROKE_P75_TO_SYMBOL
    if stat > 0:
        return stat, "strokes"
    # every stroke is flat (e.g. "- -"): fall back to the expression's extent
    x0, y0, x1, y1 = ink.bbox()
    return max(y1 - y0, (x1 - x0) / MAX_ASPECT), "strokes"


def rasterize(ink: Ink, cfg: RasterConfig = RasterConfig()) -> tuple[np.ndarray, dict]:
    """Draw ``ink`` -> (uint8 [h, w] dark ink on white, info {scale, symbol_height, ...})."""
    x0, y0, x1, y1 = ink.bbox()
    w, h = x1 - x0, y1 - y0
    pad, pen = cfg.padding, cfg.pen
    info: dict = {}
    if cfg.normalize == "height128":
        content = HEIGHT - 2 * pad - pen  # the pen's half width sticks out on each side
        scale = content / max(h, w / MAX_ASPECT)
        out_h = HEIGHT
    else:
        sym, how = symbol_height(ink)
        scale = SYMBOL_HEIGHT_PX / sym
        out_h = int(np.ceil(h * scale + pen)) + 2 * pad
        info.update(symbol_height=round(sym, 6), symbol_estimate=how)
    out_w = int(np.ceil(w * scale + pen)) + 2 * pad
    if out_w > MAX_SIDE_PX or out_h > MAX_SIDE_PX:
        raise InkmlError("too-large", f"rasterized image would be {out_w}x{out_h} px, above {MAX_SIDE_PX}")
    # offset: center the content in the canvas (matters for height128's aspect cap)
    ox = (out_w - w * scale) / 2.0
    oy = (out_h - h * scale) / 2.0
    ss = cfg.supersample
    img = Image.new("L", (out_w * ss, out_h * ss), 255)
    draw = ImageDraw.Draw(img)
    width = max(1, int(round(pen * ss)))
    r = width / 2.0
    for stroke in ink.strokes:
        xy = np.empty_like(stroke)  # [n, 2] in supersampled pixels
        xy[:, 0] = ((stroke[:, 0] - x0) * scale + ox) * ss
        xy[:, 1] = ((stroke[:, 1] - y0) * scale + oy) * ss
        pts = _dedupe(xy)  # [m, 2]
        if len(pts) > 1:
            draw.line(pts.ravel().tolist(), fill=0, width=width)  # flat [x0, y0, x1, y1, ...]
        # Round caps at both ends (a single point is a dot) and round joints where the
        # stroke turns sharply; PIL's joint="curve" does this for every joint in Python
        # and costs 4x the whole drawing.
        for px, py in pts[_round_points(pts)]:
            draw.ellipse((px - r, py - r, px + r, py + r), fill=0)
    if ss > 1:
        img = img.reduce(ss)  # box filter: exact area coverage -> anti-aliasing
    info.update(scale=scale, width=out_w, height=out_h)
    return np.asarray(img, dtype=np.uint8), info


def _dedupe(xy: np.ndarray) -> np.ndarray:
    """Drop consecutive points that fall on the same supersampled pixel (fewer, cleaner joints)."""
    keep = np.ones(len(xy), dtype=bool)
    if len(xy) > 1:
        keep[1:] = np.any(np.abs(np.diff(xy, axis=0)) >= 1.0, axis=1)
    return xy[keep]


def _round_points(pts: np.ndarray, min_turn_deg: float = 30.0) -> np.ndarray:
    """Indices that need a round blob: both ends, and joints turning more than ``min_turn_deg``
    (below that, the gap between two wide segments is under ~4% of the pen width)."""
    n = len(pts)
    idx = [0, n - 1] if n > 1 else [0]
    if n > 2:
        d = np.diff(pts, axis=0)  # [m-1, 2]
        a, b = d[:-1], d[1:]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        idx.extend((np.nonzero(cos < np.cos(np.radians(min_turn_deg)))[0] + 1).tolist())
    return np.asarray(idx, dtype=np.int64)


def rasterize_strokes(strokes: Sequence[np.ndarray], cfg: RasterConfig = RasterConfig()) -> np.ndarray:
    """Convenience for callers with bare strokes (no label, no trace groups)."""
    return rasterize(Ink(strokes=list(strokes), truth=""), cfg)[0]
