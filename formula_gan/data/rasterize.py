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
* Drawing (``DRAWING``): strokes are drawn by AGG (``aggdraw``), an anti-aliasing
  scan-line renderer with exact pixel coverage (round caps and sharp joints are
  dots of the pen's width, see ``draw_strokes``). It replaced PIL lines at 4x
  supersampling (box-filtered down): on 250 CROHME formulas at height 128, 0.58 ms
  against 3.88 ms per image (6.7x), mean absolute difference 1.3 grey levels, ink
  ratio 1.04; OpenCV's anti-aliased polylines were a little faster still but drew
  1.8x the ink at the same pen width (``scripts/bench_rasterize.py`` measures the
  three again, in one run).
* ``MAX_ASPECT = 16`` (height128 only): a flat expression (``-``, ``\\ldots``) is
  not blown up to 128 px of height; the scale is limited so that the content is at
  most 16 times wider than high, then centered vertically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import aggdraw
from PIL import Image

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
DRAWING = "agg"  # the drawing engine, part of every job's identity: another one draws other pixels
MAX_ASPECT = 16.0
# Refuse images no model here could use (the loader caps width at 512 at height 128).
MAX_SIDE_PX = 8192


@dataclass(frozen=True)
class RasterConfig:
    normalize: Normalization = "height128"
    pen_width: float | None = None  # px in the output image; None = DEFAULT_PEN_WIDTH[normalize]
    padding: int = 8  # px of white on each side

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.pen_width is not None and not self.pen_width > 0:
            raise ValueError(f"pen_width must be positive, got {self.pen_width}")
        if self.padding < 0:
            raise ValueError("padding must be >= 0")

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
    image = draw_strokes([np.stack([(st[:, 0] - x0) * scale + ox, (st[:, 1] - y0) * scale + oy], axis=1)
                          for st in ink.strokes], out_w, out_h, pen)
    info.update(scale=scale, width=out_w, height=out_h)
    return image, info


def draw_strokes(strokes: Sequence[np.ndarray], width: int, height: int, pen: float) -> np.ndarray:
    """Strokes in pixel coordinates ([n, 2] float each) -> uint8 [height, width] dark ink on white,
    anti-aliased, with round caps and round sharp joints (a single point is a dot).

    AGG's lines have butt caps and mitred joins, so each stroke is drawn as runs between its
    sharp turns (where a mitre would stick out as a spike) with a round dot of the pen's width
    at both ends of every run; within a run the joints turn by less than ``SHARP_TURN_DEG``,
    where a mitre reaches under 4 % of the pen's width past a round joint."""
    img = Image.new("L", (width, height), 255)
    draw = aggdraw.Draw(img)
    line = aggdraw.Pen(0, pen)
    dot = aggdraw.Brush(0)
    r = pen / 2.0
    if strokes:
        pts, runs, cuts = _runs(strokes)
        for a, b in runs:
            draw.line(pts[a : b + 1].ravel().tolist(), line)  # flat [x0, y0, x1, y1, ...]
        for x, y in pts[cuts].tolist():
            draw.ellipse((x - r, y - r, x + r, y + r), dot)
    draw.flush()
    return np.asarray(img, dtype=np.uint8)


SHARP_TURN_DEG = 30.0
MIN_STEP_PX = 0.25  # consecutive points closer than this are one point (fewer, cleaner joints)


def _runs(strokes: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """All strokes at once (numpy per formula, not per stroke): the points without near
    duplicates [n, 2], the runs to draw as lines (first, last index), and the cut points
    that get a dot (both ends of each stroke and every joint turning more than ``SHARP_TURN_DEG``)."""
    pts = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes])  # [n, 2]
    sid = np.repeat(np.arange(len(strokes)), [len(s) for s in strokes])  # [n] stroke of each point
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = (sid[1:] != sid[:-1]) | (np.abs(np.diff(pts, axis=0)) >= MIN_STEP_PX).any(axis=1)
    pts, sid = pts[keep], sid[keep]
    n = len(pts)
    first = np.ones(n, dtype=bool)
    first[1:] = sid[1:] != sid[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = sid[1:] != sid[:-1]
    cut = first | last
    if n > 2:
        d = np.diff(pts, axis=0)  # [n-1, 2]: d[i] goes from point i to i+1
        a, b = d[:-1], d[1:]  # around inner point i+1
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        inner = ~first[1:-1] & ~last[1:-1]
        cut[1:-1] |= inner & (cos < np.cos(np.radians(SHARP_TURN_DEG)))
    cuts = np.flatnonzero(cut)
    runs = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if sid[a] == sid[b]]
    return pts, runs, cuts


def rasterize_strokes(strokes: Sequence[np.ndarray], cfg: RasterConfig = RasterConfig()) -> np.ndarray:
    """Convenience for callers with bare strokes (no label, no trace groups)."""
    return rasterize(Ink(strokes=list(strokes), truth=""), cfg)[0]
