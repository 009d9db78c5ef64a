"""Drawing stitched glyphs: the image (with each glyph's box in it) and the strokes as InkML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from formula_gan.data.inkml import Ink
from formula_gan.data.rasterize import RasterConfig, rasterize
from katex_render.boxes import SymbolBox


@dataclass
class PlacedGlyph:
    token: int  # index in the formula's tokens
    symbol: str  # what is drawn: the bank token (\frac's bar is "-"), or the token composed
    writer: str
    glyph: int  # index in its bank of the (first) glyph drawn; -1 for a font glyph
    strokes: list[np.ndarray]  # each [n, 2] float64 in layout px
    source: str = "bank"  # bank | composed (of the bank's glyphs) | fallback-bank | hershey


@dataclass
class Stitched:
    """A stitched formula: its glyphs, its image and each glyph's box in that image."""

    glyphs: list[PlacedGlyph]
    image: np.ndarray  # uint8 [h, w] dark ink on white
    boxes: list[SymbolBox]  # one per glyph, in image pixels
    info: dict = field(default_factory=dict)  # the rasterizer's (scale, width, height, ...)

    @property
    def writers(self) -> list[str]:
        """The writers of the glyphs, most used first."""
        counts: dict[str, int] = {}
        for g in self.glyphs:
            counts[g.writer] = counts.get(g.writer, 0) + 1
        return sorted(counts, key=lambda w: (-counts[w], w))


def draw_glyphs(glyphs: Sequence[PlacedGlyph], raster: RasterConfig, latex: str = "") -> Stitched:
    """Rasterize placed glyphs as prepare-crohme rasterizes CROHME (``raster``), and box each glyph."""
    strokes = [s for g in glyphs for s in g.strokes]
    ids: list[str] = []
    groups: list[tuple[str, list[str]]] = []
    for g in glyphs:
        refs = [str(len(ids) + k) for k in range(len(g.strokes))]
        ids.extend(refs)
        groups.append((g.symbol, refs))  # labels as CROHME's: the symbol normalization reads them
    ink = Ink(strokes=strokes, truth=latex, trace_groups=groups, trace_ids=ids)
    image, info = rasterize(ink, raster)
    to_image = _image_transform(ink, info)
    # the pen's half width, and anti-aliasing reaches half a pixel further
    half = raster.pen / 2.0 + 0.5
    boxes = []
    for g in glyphs:
        pts = to_image(np.concatenate(g.strokes))
        lo, hi = pts.min(axis=0) - half, pts.max(axis=0) + half
        boxes.append(SymbolBox(g.token, max(0, math.floor(lo[0])), max(0, math.floor(lo[1])),
                               min(image.shape[1], math.ceil(hi[0])), min(image.shape[0], math.ceil(hi[1]))))
    return Stitched(list(glyphs), image, boxes, info)


def inkml(stitched: Stitched, latex: str) -> bytes:
    """The strokes as InkML, in the image's pixel coordinates, one trace group per glyph
    (its token and writer), the LaTeX as the truth: the online form of the sample."""
    to_image = _image_transform(Ink(strokes=[s for g in stitched.glyphs for s in g.strokes], truth=""), stitched.info)
    lines = ['<ink xmlns="http://www.w3.org/2003/InkML">',
             '<traceFormat><channel name="X" type="decimal"/><channel name="Y" type="decimal"/></traceFormat>',
             f'<annotation type="truth">{escape(latex)}</annotation>',
             f'<annotation type="writer">{escape(" ".join(stitched.writers))}</annotation>']
    number = 0
    group_lines = []
    for g in stitched.glyphs:
        refs = []
        for s in g.strokes:
            pts = to_image(s)
            lines.append(f'<trace id="{number}">' + ", ".join(f"{x:.2f} {y:.2f}" for x, y in pts) + "</trace>")
            refs.append(number)
            number += 1
        group_lines.append(f'<traceGroup><annotation type="truth">{escape(g.symbol)}</annotation>'
                           f'<annotation type="writer">{escape(g.writer)}</annotation>'
                           + "".join(f"<traceView traceDataRef={quoteattr(str(r))}/>" for r in refs) + "</traceGroup>")
    lines.append('<traceGroup><annotation type="truth">Segmentation</annotation>')
    lines.extend(group_lines)
    lines.append("</traceGroup>")
    lines.append("</ink>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _image_transform(ink: Ink, info: dict):
    """Ink coordinates -> image pixels, as ``rasterize`` maps them (its scale, content centred)."""
    x0, y0, x1, y1 = ink.bbox()
    scale = float(info["scale"])
    ox = (info["width"] - (x1 - x0) * scale) / 2.0
    oy = (info["height"] - (y1 - y0) * scale) / 2.0

    def to_image(points: np.ndarray) -> np.ndarray:
        return (points - (x0, y0)) * scale + (ox, oy)

    return to_image
