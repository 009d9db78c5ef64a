"""How a token is drawn in its KaTeX box: one glyph, or a composition of glyphs a writer has.

CROHME's writers wrote 101 symbols; formulas use many more. Much of the rest is
made of symbols they did write, and people write it that way too: ``\\ln`` is an
l and an n, ``\\cdot`` a raised dot, ``\\|`` two bars, ``\\bar`` a minus over its
base, ``\\vec`` a small arrow, ``\\equiv`` three bars, a matrix's or binomial's
brackets are a writer's ``(`` and ``)`` stretched to the height KaTeX gives them.
``plan`` turns a token and its box into parts (symbol, sub-box, how it is fitted)
that the stitcher draws; ``None`` when no rule applies.

Fits: ``glyph`` (into the box, aspect kept within limits), ``bar`` (stretched to
the box's width, natural thickness: fraction bars, overlines, accent arrows),
``radical`` (stretched over sign and radicand), ``tall`` (a delimiter: the box's
height, its own width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in layout px


@dataclass(frozen=True)
class Part:
    symbol: str  # what is drawn (a bank token, or a Hershey one)
    box: Box
    fit: str  # glyph | bar | radical | tall


BARS = frozenset({"\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\overline", "\\underline", "\\bar"})
RADICALS = frozenset({"\\sqrt"})
ARROW_ACCENTS = frozenset({"\\vec", "\\overrightarrow", "\\xrightarrow", "\\longrightarrow"})
# One symbol drawn as another that looks the same in handwriting.
LOOKALIKE = {
    "\\cdot": ".", "\\cdotp": ".", "\\cdots": "\\ldots", "\\dots": "\\ldots", "\\mid": "|", "\\vert": "|",
    "\\langle": "<", "\\rangle": ">", "\\triangle": "\\Delta", "\\circ": "o", "\\dot": ".", "\\to": "\\rightarrow",
    "\\ell": "l", "\\lvert": "|", "\\rvert": "|", "\\lbrack": "[", "\\rbrack": "]", "\\lfloor": "[", "\\rfloor": "]",
    "\\lceil": "[", "\\rceil": "]", "\\bigcup": "\\cup", "\\bigcap": "\\cap", "\\vee": "v", "\\implies": "\\Rightarrow",
    "\\tilde": "\\sim", "\\widetilde": "\\sim", "\\Re": "R", "\\Im": "I",
}
# Symbols made of several, side by side (h) or stacked (v), each part an equal share of the box.
ROWS = {
    "\\|": ("h", ("|", "|")), "\\parallel": ("h", ("|", "|")), "\\ddot": ("h", (".", ".")),
    ":": ("v", (".", ".")), "\\equiv": ("v", ("-", "-", "-")), "\\approx": ("v", ("\\sim", "\\sim")),
    "\\iint": ("h", ("\\int", "\\int")), "\\iiint": ("h", ("\\int", "\\int", "\\int")),
    "\\Leftrightarrow": ("h", ("<", "=", ">")), "\\leftrightarrow": ("h", ("<", "-", ">")),
    "\\Rightarrow": ("h", ("=", ">")), "\\Leftarrow": ("h", ("<", "=")), "\\mapsto": ("h", ("|", "\\rightarrow")),
}
# Symbols drawn over each other in one box.
OVERLAYS = {
    "\\notin": ("\\in", "/"), "\\nmid": ("|", "/"), "\\emptyset": ("0", "/"), "\\varnothing": ("0", "/"),
    "\\hbar": ("h", "-"), "\\oint": ("\\int", "o"), "\\oplus": ("o", "+"), "\\otimes": ("o", "\\times"),
    "\\cancel": ("/",), "\\subseteq": ("\\subset",), "\\supseteq": ("\\supset",),
}
# Environments and commands whose box is their delimiters (and, but for cases, the cells between).
DELIMITED = {
    "\\begin{pmatrix}": ("(", ")"), "\\binom": ("(", ")"), "\\dbinom": ("(", ")"), "\\tbinom": ("(", ")"),
    "\\begin{bmatrix}": ("[", "]"), "\\begin{vmatrix}": ("|", "|"), "\\begin{Bmatrix}": ("\\{", "\\}"),
    "\\begin{Vmatrix}": ("\\|", "\\|"), "\\begin{cases}": ("\\{",), "\\begin{dcases}": ("\\{",),
    "\\begin{rcases}": ("\\}",),
}
# KaTeX's named operators (an upright word): written as their letters.
OPERATOR_NAMES = frozenset(
    "\\" + name for name in (
        "arccos arcsin arctan arg cos cosh cot coth csc deg det dim exp gcd hom inf ker lg lim liminf limsup ln "
        "log max min sec sin sinh sup tan tanh"
    ).split()
)
# Letters with ascenders / descenders, for multi-letter operator names.
ASCENDERS = frozenset("bdfhklt")
DESCENDERS = frozenset("gjpqy")
# \stackrel {over} {base} and friends: their own ink is the base argument's symbol.
STACKED = frozenset({"\\stackrel", "\\overset", "\\underset"})


def plan(tokens: Sequence[str], index: int, box: Box, drawable: Callable[[str], bool]) -> list[Part] | None:
    """The parts that draw ``tokens[index]`` in ``box`` with symbols ``drawable`` accepts, or None."""
    token = tokens[index]
    if token in BARS:
        return [Part("-", box, "bar")] if drawable("-") else None
    if token in RADICALS:
        return [Part("\\sqrt", box, "radical")] if drawable("\\sqrt") else None
    if drawable(token):
        return [Part(token, box, "glyph")]
    for parts in _compositions(tokens, index, token, box):
        if all(drawable(p.symbol) for p in parts):
            return parts
    return None


def _compositions(tokens: Sequence[str], index: int, token: str, box: Box) -> list[list[Part]]:
    """Every way this module knows to draw ``token`` from other symbols, best first."""
    out: list[list[Part]] = []
    if token in LOOKALIKE:
        out.append([Part(LOOKALIKE[token], box, "bar" if LOOKALIKE[token] == "\\rightarrow" else "glyph")])
    if token in ARROW_ACCENTS:
        out.append([Part("\\rightarrow", box, "bar")])
    if token in ROWS:
        way, symbols = ROWS[token]
        out.append([Part(s, b, "glyph") for s, b in zip(symbols, _split(box, len(symbols), way))])
    if token in OVERLAYS:
        out.append([Part(s, box, "glyph") for s in OVERLAYS[token]])
    if token in DELIMITED:
        out.append(_delimiters(DELIMITED[token], box))
    if token in STACKED:
        base = _second_argument(tokens, index)
        if base is not None:
            out.append([Part(base, box, "glyph")])
    if token in OPERATOR_NAMES:
        out.append(_letters(token[1:], box))  # \ln, \det, \arcsin: the operator's letters
    if token == "\\hat" or token == "\\widehat":
        out.append([Part("\\wedge", box, "glyph")])
    if token == "O":
        out.append([Part("0", box, "glyph")])
    return out


def _split(box: Box, n: int, way: str) -> list[Box]:
    x0, y0, x1, y1 = box
    if way == "h":
        w = (x1 - x0) / n
        return [(x0 + i * w, y0, x0 + (i + 1) * w, y1) for i in range(n)]
    h = (y1 - y0) / n
    return [(x0, y0 + i * h, x1, y0 + (i + 1) * h) for i in range(n)]


def _delimiters(symbols: tuple[str, ...], box: Box) -> list[Part]:
    """One delimiter at each side of the box (one: the whole box), a fifth of the height wide."""
    x0, y0, x1, y1 = box
    if len(symbols) == 1:
        return [Part(symbols[0], box, "tall")]
    w = min((x1 - x0) / 3, max(4.0, 0.2 * (y1 - y0)))
    return [Part(symbols[0], (x0, y0, x0 + w, y1), "tall"), Part(symbols[1], (x1 - w, y0, x1, y1), "tall")]


def _letters(word: str, box: Box) -> list[Part]:
    """An operator name's letters side by side; x-height letters in the lower part of the box."""
    x0, y0, x1, y1 = box
    baseline = y0 + 0.78 * (y1 - y0) if any(c in DESCENDERS for c in word) else y1
    xheight = 0.55 * (baseline - y0)
    parts = []
    for c, (a, _, b, _) in zip(word, _split(box, len(word), "h")):
        top = y0 if c in ASCENDERS else y0 + 0.25 * (baseline - y0) if c == "i" else baseline - xheight
        bottom = y1 if c in DESCENDERS else baseline
        parts.append(Part(c, (a, top, b, bottom), "glyph"))
    return parts


def _second_argument(tokens: Sequence[str], index: int) -> str | None:
    """The token of ``\\stackrel {a} {b}``'s second argument when it is a single token."""
    depth, groups, start = 0, [], None
    for i in range(index + 1, len(tokens)):
        if tokens[i] == "{":
            if depth == 0:
                start = i
            depth += 1
        elif tokens[i] == "}":
            depth -= 1
            if depth == 0:
                groups.append(tokens[start + 1 : i])  # type: ignore[operator]
                if len(groups) == 2:
                    break
    return groups[1][0] if len(groups) == 2 and len(groups[1]) == 1 else None
