"""The last fallback for a symbol no writer of the bank has: a Hershey single-stroke glyph.

The Hershey vector fonts (A. V. Hershey, U.S. National Bureau of Standards, 1967;
the ``hershey-fonts`` package, MIT) draw every glyph as pen strokes, not as
outlines: they go through the stitcher exactly like a writer's glyph (fitted to
its box, jittered, slanted, drawn with the same pen, written to ``--ink`` as
strokes). They are a font, though, and a reader can tell: samples that use one
say so (``glyph_sources``), and ``--no-fallback`` refuses such formulas instead.

``GLYPHS`` maps a normalized token to (font, character): the Hershey fonts put
their math symbols and Greek letters at ASCII positions (``greek``: ``a`` is α;
``mathlow``: ``p`` is ∫). Tokens that are composed of others (``\\iint``,
``\\notin``) are ``compose.py``'s business.
"""

from __future__ import annotations

import numpy as np

GREEK_LOWER = {
    "\\alpha": "a", "\\beta": "b", "\\chi": "c", "\\delta": "d", "\\epsilon": "e", "\\varepsilon": "e",
    "\\phi": "f", "\\varphi": "f", "\\gamma": "g", "\\eta": "h", "\\iota": "i", "\\kappa": "k", "\\lambda": "l",
    "\\mu": "m", "\\nu": "n", "\\omicron": "o", "\\pi": "p", "\\vartheta": "q", "\\theta": "q", "\\rho": "r",
    "\\varrho": "r", "\\sigma": "s", "\\tau": "t", "\\upsilon": "u", "\\omega": "w", "\\xi": "x", "\\psi": "y",
    "\\zeta": "z",
}
GREEK_UPPER = {
    "\\Delta": "D", "\\Phi": "F", "\\Gamma": "G", "\\Lambda": "L", "\\Pi": "P", "\\Theta": "Q", "\\Sigma": "S",
    "\\Upsilon": "U", "\\Omega": "W", "\\Xi": "X", "\\Psi": "Y",
}
MATH = {
    "\\pm": "!", "\\mp": '"', "\\times": "#", "\\cdot": "$", "\\%": "%", "\\leq": "&", "\\geq": "'",
    "\\prod": ":", "\\sum": ";", "\\neq": "?", "\\equiv": "@", "\\propto": "^", "\\infty": "_", "\\circ": "`",
    "\\subset": "d", "\\cup": "e", "\\supset": "f", "\\cap": "g", "\\in": "h", "\\rightarrow": "i",
    "\\uparrow": "j", "\\leftarrow": "k", "\\downarrow": "l", "\\partial": "m", "\\nabla": "n", "\\sqrt": "o",
    "\\int": "p", "\\exists": "v", "\\aleph": "w", "\\div": "x", "\\parallel": "y", "\\|": "y", "\\perp": "z",
    "\\angle": "|", "\\therefore": "~", "\\{": "{", "\\}": "}", "\\bigcup": "e", "\\bigcap": "g",
    "(": "(", ")": ")", "[": "[", "]": "]", "+": "+", "-": "-", "=": "=", "<": "<", ">": ">", "/": "/",
    ",": ",", ".": ".", "*": "*", "\\setminus": "\\",
}
SIGNS = {"!": "!", "?": "?", ":": ":", ";": ";", "\\sim": "~", "\\hat": "^", "\\widehat": "^", "\\wedge": "^",
         "|": "|", "\\mid": "|", "\\#": "#", "\\&": "&", "@": "@", "\\$": "$"}
SHAPES = {"\\square": "I", "\\Box": "I", "\\triangle": "J", "\\bigcirc": "H", "\\diamond": "K"}


def glyph_table() -> dict[str, tuple[str, str]]:
    """Every token this fallback can draw -> (Hershey font, character)."""
    table: dict[str, tuple[str, str]] = {}
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[ch] = ("mathupp", ch)
        table[ch.lower()] = ("mathlow", ch)  # mathlow puts the lower-case letters at upper-case positions
    for d in "0123456789":
        table[d] = ("mathlow", d)
    table.update({t: ("greek", c) for t, c in GREEK_LOWER.items()})
    table.update({t: ("greek", c) for t, c in GREEK_UPPER.items()})
    table.update({t: ("mathlow", c) for t, c in MATH.items()})
    table.update({t: ("greek", c) for t, c in SIGNS.items()})
    table.update({t: ("symbolic", c) for t, c in SHAPES.items()})
    return table


class HersheyGlyphs:
    """Hershey glyphs by token, as strokes in font units (y down), loaded once per font."""

    def __init__(self) -> None:
        self.table = glyph_table()
        self._fonts: dict[str, object] = {}
        self._glyphs: dict[str, list[np.ndarray]] = {}

    def has(self, token: str) -> bool:
        return token in self.table

    def strokes(self, token: str) -> list[np.ndarray]:
        """The glyph's strokes, each [n, 2] float64, its ink box starting at (0, 0)."""
        if token not in self._glyphs:
            font_name, char = self.table[token]
            font = self._fonts.get(font_name)
            if font is None:
                from HersheyFonts import HersheyFonts  # a few ms; only formulas that need a fallback pay it

                font = HersheyFonts()
                font.load_default_font(font_name)
                self._fonts[font_name] = font
            strokes = [np.asarray(s, dtype=np.float64) for s in font.strokes_for_text(char) if len(s)]  # type: ignore[attr-defined]
            if strokes:
                lo = np.concatenate(strokes).min(axis=0)
                strokes = [s - lo for s in strokes]
            self._glyphs[token] = strokes
        return [s.copy() for s in self._glyphs[token]]

    def size(self, token: str) -> tuple[float, float]:
        """(width, height) of the glyph's ink in font units."""
        pts = np.concatenate(self.strokes(token))
        return float(pts[:, 0].max()), float(pts[:, 1].max())
