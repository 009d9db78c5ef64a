"""How real writers lay a formula out, measured against how KaTeX lays out the same formula.

CROHME's InkML holds every symbol's strokes (trace groups), so for each training
formula the real box of each symbol can be set beside the box KaTeX gives the
same token. Per formula, the KaTeX boxes are mapped onto the real ones by one scale (the
median ratio of the symbols' heights) and a shift, and horizontally by the
least-squares scale and shift of the centres (people write wider or narrower
than print); what is left over is each symbol's own deviation, measured in the
formula's symbol height and grouped by the symbol's *relation* in the formula
(base line, superscript, subscript, numerator, denominator, radicand, limits of
a big operator; see ``relations``):

* ``size``: log of the real box height over the fitted KaTeX box height;
* ``dy``: the real box centre's vertical offset from the fitted KaTeX centre;
* ``dx``: the same horizontally;
* per formula, ``aspect``: log of the x scale over the height scale, how much
  wider than print a writer spreads the formula.

The stitcher draws each formula's deviations from these distributions: one draw
per relation and formula (a writer who writes small exponents writes all of them
small) plus a smaller per-symbol draw, instead of hand-set jitter.

The matching of trace groups to tokens uses the symbols' order: both sides are
symbol sequences (KaTeX's in token order, CROHME's in writing order), aligned by
``difflib``; a formula where fewer than 80 % of the symbols align is skipped.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from katex_render.boxes import SymbolBox

SCRIPT_OPS = frozenset({"^", "_"})
BIG_OPERATORS = frozenset({"\\sum", "\\int", "\\prod", "\\lim", "\\iint", "\\oint", "\\bigcup", "\\bigcap"})
RELATIONS = ("base", "sup", "sub", "num", "den", "rad", "limit", "script2")
MIN_ALIGNED = 0.8  # share of a formula's symbols that must align for it to count
FLAT = frozenset({"-", "\\frac", "=", ".", "\\ldots", "\\cdots", "\\cdot", ",", "\\rightarrow", "\\times"})


def relations(tokens: Sequence[str]) -> list[str]:
    """The relation of every token to the formula (one of ``RELATIONS``), from the group
    structure of the normalized tokens: inside ``^{..}`` of a big operator a ``limit``,
    else ``sup``; inside ``_{..}`` a ``sub`` (or ``limit``); in ``\\frac``'s first group
    ``num``, its second ``den``; in ``\\sqrt``'s ``rad``; two script levels deep ``script2``."""
    out: list[str] = []
    stack: list[str] = []  # the kind of each open group
    pending: list[str] = []  # kinds of the next groups to open, in order (\frac: num then den)
    prev = ""
    for i, tok in enumerate(tokens):
        if tok == "{":
            if pending:
                stack.append(pending.pop(0))
            elif prev in SCRIPT_OPS:
                base = _script_base(tokens, i - 1)
                limit = base in BIG_OPERATORS
                stack.append("limit" if limit else "sup" if prev == "^" else "sub")
            else:
                stack.append("group")
            out.append(_relation(stack))
        elif tok == "}":
            out.append(_relation(stack))
            if stack:
                stack.pop()
        else:
            if tok in ("\\frac", "\\dfrac", "\\tfrac", "\\cfrac", "\\binom"):
                pending = ["num", "den"]
            elif tok == "\\sqrt":
                pending = ["rad"]
            out.append(_relation(stack))
        prev = tok
    return out


def _relation(stack: list[str]) -> str:
    kinds = [k for k in stack if k != "group"]
    scripts = [k for k in kinds if k in ("sup", "sub", "limit")]
    if len(scripts) >= 2:
        return "script2"
    return kinds[-1] if kinds else "base"


def _script_base(tokens: Sequence[str], op: int) -> str:
    """The token a script at ``op`` attaches to (skipping a sibling script: x_{i}^{2})."""
    j = op - 1
    while j >= 0:
        if tokens[j] == "}":
            depth = 0
            while j >= 0:
                depth += tokens[j] == "}"
                depth -= tokens[j] == "{"
                j -= 1
                if depth == 0:
                    break
            if j >= 0 and tokens[j] in SCRIPT_OPS:
                j -= 1
                continue
            return tokens[j + 1] if j + 1 < len(tokens) else ""
        if tokens[j] == "\\limits" or tokens[j] == "\\nolimits":
            j -= 1
            continue
        return tokens[j]
    return ""


@dataclass
class Deviations:
    """Measured deviations of real symbols from their fitted KaTeX boxes."""

    # per relation: (formula number, value) of every matched symbol
    size: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {r: [] for r in RELATIONS})
    dy: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {r: [] for r in RELATIONS})
    dx: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {r: [] for r in RELATIONS})
    aspect: list[float] = field(default_factory=list)
    formulas: int = 0
    skipped: int = 0

    def add_formula(self, tokens: Sequence[str], katex: Sequence[SymbolBox], real: Sequence[tuple[str, tuple[float, float, float, float]]],
                    symbol_of) -> bool:
        """Match one formula's KaTeX boxes to its real symbol boxes (label, (x0, y0, x1, y1)) and
        record the deviations; False when it could not be matched."""
        rel = relations(tokens)
        k_sym = [symbol_of(tokens[b.token]) for b in katex]
        r_sym = [label for label, _ in real]
        pairs = []
        for block in difflib.SequenceMatcher(a=k_sym, b=r_sym, autojunk=False).get_matching_blocks():
            pairs.extend((block.a + k, block.b + k) for k in range(block.size))
        if len(pairs) < max(2, MIN_ALIGNED * max(len(k_sym), len(r_sym))):
            self.skipped += 1
            return False
        kb = np.array([[katex[a].x0, katex[a].y0, katex[a].x1, katex[a].y1] for a, _ in pairs], dtype=np.float64)
        rb = np.array([real[b][1] for _, b in pairs], dtype=np.float64)
        kc, rc = (kb[:, :2] + kb[:, 2:]) / 2, (rb[:, :2] + rb[:, 2:]) / 2  # [m, 2] centres
        kh, rh = kb[:, 3] - kb[:, 1], rb[:, 3] - rb[:, 1]  # [m] heights
        tall = np.array([k_sym[a] not in FLAT for a, _ in pairs]) & (kh > 0) & (rh > 0)
        if tall.sum() < 2:
            self.skipped += 1
            return False
        # The scale from the symbols' heights (a one-line formula says nothing about a y scale
        # through its centres), the shift from the centres; x from a fit of the centres.
        scale = float(np.median(rh[tall] / kh[tall]))
        sx, tx = _fit(kc[:, 0], rc[:, 0])
        if not (scale > 0 and sx > 0):
            self.skipped += 1
            return False
        ty = float(np.median(rc[:, 1] - scale * kc[:, 1]))
        unit = float(np.median(rh[tall]))
        self.aspect.append(math.log(sx / scale))
        for i, (a, _) in enumerate(pairs):
            r = rel[katex[a].token]
            n = self.formulas
            if tall[i]:
                self.size[r].append((n, math.log(rh[i] / (scale * kh[i]))))
            self.dy[r].append((n, (rc[i, 1] - (scale * kc[i, 1] + ty)) / unit))
            self.dx[r].append((n, (rc[i, 0] - (sx * kc[i, 0] + tx)) / unit))
        self.formulas += 1
        return True

    def summary(self) -> dict:
        """Per relation and deviation: count, mean, and its spread split into a part shared by
        the symbols of one formula (``between``: one writer's habit) and the rest (``within``);
        the aspect's mean and spread."""
        out: dict = {"formulas": self.formulas, "skipped": self.skipped,
                     "aspect": _stats([(i, v) for i, v in enumerate(self.aspect)]), "relations": {}}
        for r in RELATIONS:
            out["relations"][r] = {"size": _stats(self.size[r]), "dy": _stats(self.dy[r]), "dx": _stats(self.dx[r])}
        return out


def _fit(k: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """Least-squares r ≈ s·k + t."""
    if len(k) < 2 or float(np.ptp(k)) == 0:
        return 0.0, 0.0
    s, t = np.polyfit(k, r, 1)
    return float(s), float(t)


def _stats(values: Sequence[tuple[int, float]]) -> dict:
    """n, mean, total spread and its split (between formulas / within a formula), from the
    values between the 2nd and 98th percentile (a mis-segmented group must not set the spread)."""
    if not values:
        return {"n": 0, "mean": 0.0, "std": 0.0, "between": 0.0, "within": 0.0}
    ids = np.array([i for i, _ in values])
    v = np.array([x for _, x in values], dtype=np.float64)
    lo, hi = np.percentile(v, [2, 98])
    keep = (v >= lo) & (v <= hi)
    ids, v = ids[keep], v[keep]
    total = float(v.var())
    groups = [v[ids == i] for i in np.unique(ids)]
    pooled = [g - g.mean() for g in groups if len(g) > 1]
    within = float(np.concatenate(pooled).var() * len(np.concatenate(pooled)) / max(1, len(np.concatenate(pooled)) - len(pooled))) \
        if pooled else total
    within = min(within, total)
    return {"n": int(len(v)), "mean": round(float(v.mean()), 4), "std": round(math.sqrt(total), 4),
            "between": round(math.sqrt(max(0.0, total - within)), 4), "within": round(math.sqrt(within), 4)}


@dataclass(frozen=True)
class Deviation:
    """How one symbol departs from its KaTeX box: log size factor, shift in symbol heights."""

    size: float
    dx: float
    dy: float
    means: bool = False  # only the relation's mean: the caller adds its own jitter


class LayoutModel:
    """Draws formula layouts from measured deviations (``Deviations.summary()``): per formula
    one aspect and, per relation, one offset of each deviation (the writer's habit), then per
    symbol the rest of the spread."""

    def __init__(self, summary: dict) -> None:
        try:
            self.aspect = (float(summary["aspect"]["mean"]), float(summary["aspect"]["std"]))
            self.relations = {
                r: {k: (float(v[k]["mean"]), float(v[k]["between"]), float(v[k]["within"])) for k in ("size", "dx", "dy")}
                for r, v in summary["relations"].items()
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a layout summary ({type(err).__name__}: {err})") from err
        for r in RELATIONS:
            if r not in self.relations:
                raise ValueError(f"not a layout summary: no relation {r!r}")

    def formula(self, rng: np.random.Generator, means: bool = False) -> "FormulaLayout":
        """One formula's draw; ``means``: every deviation at its relation's mean (no draw)."""
        if means:
            offsets = {r: {k: mean for k, (mean, _, _) in d.items()} for r, d in self.relations.items()}
            return FormulaLayout(math.exp(self.aspect[0]), offsets, self, means=True)
        offsets = {r: {k: mean + rng.normal(0.0, between) for k, (mean, between, _) in d.items()}
                   for r, d in self.relations.items()}
        return FormulaLayout(math.exp(rng.normal(*self.aspect)), offsets, self)


@dataclass
class FormulaLayout:
    """One formula's draw: its horizontal stretch and each relation's offsets."""

    stretch: float
    offsets: dict[str, dict[str, float]]
    model: LayoutModel
    means: bool = False

    def symbol(self, relation: str, rng: np.random.Generator) -> Deviation:
        o = self.offsets[relation]
        if self.means:
            return Deviation(o["size"], o["dx"], o["dy"], means=True)
        spread = self.model.relations[relation]
        return Deviation(*(o[k] + rng.normal(0.0, spread[k][2]) for k in ("size", "dx", "dy")))


def measure(inks: Sequence, formula_tokens: Sequence[list[str] | None],
            group_tokens: dict[str, tuple[str | None, str | None]], symbol_of, layout_px: int = 40,
            render_workers: int = 1) -> dict:
    """``Deviations.summary()`` of these files: each file's symbol boxes (trace groups, labels
    mapped to tokens by ``group_tokens``) against KaTeX's boxes for its formula's tokens."""
    from katex_render.renderer import Renderer  # a browser: only when measuring
    from katex_render.styles import Style

    items, reals = [], []
    for ink, tokens in zip(inks, formula_tokens):
        if not tokens:
            continue
        index = {t: i for i, t in enumerate(ink.trace_ids)}
        real = []
        for label, refs in ink.trace_groups:
            token = group_tokens.get(label, (None, None))[0]
            pts = [ink.strokes[index[r]] for r in refs if r in index]
            if token is None or not pts:
                continue
            p = np.concatenate(pts)
            real.append((token, (float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max()))))
        items.append(tokens)
        reals.append(real)
    deviations = Deviations()
    with Renderer(workers=render_workers) as renderer:
        layouts = renderer.render_boxes([(t, Style("\\mathnormal", layout_px, 0)) for t in items], images=False)
    for tokens, layout, real in zip(items, layouts, reals):
        if layout.boxes:
            deviations.add_formula(tokens, layout.boxes, real, symbol_of)
    return deviations.summary()
