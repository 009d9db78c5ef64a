"""Per-symbol boxes: where each normalized token of a rendered formula put its ink.

``Renderer.render_boxes([(tokens, style), ...])`` renders the normalized tokens
(``tokens_to_latex`` under the style's font command, as the `render` job does)
and returns, besides the image, one box per token that draws ink: letters,
digits, operators, big operators, the bar of ``\\frac`` (on the ``\\frac``
token), the radical sign of ``\\sqrt`` (on ``\\sqrt``), accents, delimiters (on
the delimiter token after ``\\left``, ``\\right`` or ``\\big``). Tokens that draw
nothing (``^``, ``_``, braces, ``\\left`` itself, font commands) get no box.

How the page finds them is in ``assets/boxes.js``: KaTeX's own markup, read
after a layout-neutral colouring of the parse tree; each box is the exact ink
extent of the glyph outlines (canvas ``measureText``), SVG paths and rules,
in the final image's pixels (after the tight crop and the padding).
``images=False`` lays out and measures without capturing: the boxes of the image
that would have been captured, at a fraction of the cost (what the glyph
stitcher needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from katex_render.normalize import tokens_to_latex
from katex_render.styles import Style


HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"


def page_scripts() -> dict[str, tuple[bytes, str]]:
    """The page's scripts for boxes: ``boxes.js``, and ``serializer.js``, which is
    normalize.js itself (the one spelling of every token) loaded in a closure, with
    ``serializer_tracking.js`` appended inside it to record each parse node's tokens."""
    source = (HERE / "normalize.js").read_text(encoding="utf-8")
    if source.startswith("#!"):
        source = source.split("\n", 1)[1]  # a shebang is not JavaScript inside a function
    tracking = (ASSETS / "serializer_tracking.js").read_text(encoding="utf-8")
    # normalize.js asks require() for KaTeX; in the page that is the global katex. Its
    # main() runs only when it is node's main module, never here.
    serializer = ("window.formulaGanSerializer = (function (require, module, __dirname, process) {\n"
                  + source + "\n" + tracking + "\n})(function (name) { return name === \"path\" ? {join: String} : window.katex; }, "
                  '{exports: {}}, "", {argv: []});\n')
    js = "text/javascript; charset=utf-8"
    return {"serializer.js": (serializer.encode("utf-8"), js), "boxes.js": ((ASSETS / "boxes.js").read_bytes(), js)}


@dataclass(frozen=True)
class SymbolBox:
    """The ink of one token: pixel columns [x0, x1) and rows [y0, y1) of the image."""

    token: int  # index in the normalized token sequence
    x0: int
    y0: int
    x1: int
    y1: int

    def to_json(self) -> list[int]:
        return [self.token, self.x0, self.y0, self.x1, self.y1]

    @classmethod
    def from_json(cls, row: Sequence[int]) -> "SymbolBox":
        token, x0, y0, x1, y1 = (int(v) for v in row)
        return cls(token, x0, y0, x1, y1)


@dataclass
class Rendered:
    """One formula rendered with boxes.

    ``image``: uint8 [h, w] dark ink on white (None without capture or on error);
    ``size``: (h, w) of the image, also when it was not captured; ``error``: why
    nothing was rendered; ``boxes_error``: why a rendered formula has no boxes."""

    image: np.ndarray | None
    error: str | None = None
    boxes: list[SymbolBox] | None = None
    boxes_error: str | None = None
    size: tuple[int, int] | None = None


def boxed_latex(tokens: Sequence[str], style: Style) -> tuple[str, list[int]]:
    """The LaTeX the renderer draws for ``tokens`` under ``style`` and where each token
    starts in it (the page maps KaTeX's source locations to token indices with these)."""
    body = tokens_to_latex(list(tokens))
    latex = style.wrap(body)
    offset = len(latex) - len(body) - 1  # wrap() puts the body last, before one closing brace
    if latex[offset:offset + len(body)] != body:
        raise ValueError(f"style {style.font!r} does not wrap the formula as prefix + body + closing brace")
    starts: list[int] = []
    pos = 0
    for token in tokens:
        # tokens_to_latex writes every token verbatim, joined by one space or none
        found = body.find(token, pos, pos + 1 + len(token))
        if found < 0 or body[pos:found].strip():
            raise ValueError(f"token {token!r} not found where expected in {body!r}")
        starts.append(offset + found)
        pos = found + len(token)
    return latex, starts


def parse_page_boxes(text: str) -> list[tuple[int, float, float, float, float]]:
    """The page's boxes "t x0 y0 x1 y1,..." (sheet px) -> tuples."""
    out = []
    for row in text.split(","):
        t, x0, y0, x1, y1 = row.split()
        out.append((int(t), float(x0), float(y0), float(x1), float(y1)))
    return out


def to_image(raw: Sequence[Sequence[float]], left: float, top: float, padding: int) -> list[SymbolBox]:
    """Boxes from the page (sheet px, floats) -> integer pixel boxes of the image whose ink
    starts at sheet column ``left``, row ``top`` and that has ``padding`` px of paper around it.
    Rounded outwards: a partly covered pixel belongs to the box."""
    out = []
    for token, x0, y0, x1, y1 in raw:
        out.append(SymbolBox(int(token), math.floor(x0 - left) + padding, math.floor(y0 - top) + padding,
                             math.ceil(x1 - left) + padding, math.ceil(y1 - top) + padding))
    return out


def measured_only(item: dict[str, Any], padding: int) -> Rendered:
    """A formula laid out and measured without a capture: its image frame is the union of
    its boxes (as the tight ink crop would have found it) plus the padding."""
    raw = parse_page_boxes(item["boxes"]) if item.get("boxes") else None
    if not raw:
        reason = item.get("boxesError") or "draws no symbol"
        return Rendered(None, error=None, boxes=None, boxes_error=reason)
    left = math.floor(min(b[1] for b in raw))
    top = math.floor(min(b[2] for b in raw))
    boxes = to_image(raw, left, top, padding)
    width = max(b.x1 for b in boxes) + padding
    height = max(b.y1 for b in boxes) + padding
    return Rendered(None, boxes=boxes, size=(height, width))
