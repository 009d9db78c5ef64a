"""The glyph stitcher: real handwritten symbols placed where KaTeX lays out each token.

For each per-symbol box of a formula (``katex_render.boxes``: measured at
``layout_px``), one glyph of that token from the symbol bank
(``formula_gan.data.symbol_bank``) is scaled into the box and placed with some
jitter; the strokes of all glyphs are then drawn by the project's rasterizer,
with the same pen and normalization as the CROHME images, so stitched and real
handwriting can be compared as they are.

Choices, each a field of ``StitchConfig``:

* **One hand per formula.** The writer who has glyphs for the most of the
  formula's symbols is chosen (ties at random); a symbol that writer never wrote
  comes from a random other writer. CROHME's writers wrote 3 to 101 distinct
  symbols each, so a long formula often mixes two or three hands.
* **Fitting a box.** A glyph is scaled to its box's width and height, with the
  change of its aspect ratio limited to ``aspect_limit`` (a handwritten ``1`` is a
  bare stroke; stretching it to the width of the font's ``1`` would make it a
  blob). A glyph flat in one direction (``-``, ``\\ldots``, ``1``, ``|``) is scaled
  by the other one only; a dot keeps its natural size (``SYMBOL_EM`` of the font).
* **Bars and radicals.** The bar of ``\\frac`` (and ``\\overline``) is a ``-``
  glyph stretched over the bar's width, its height kept natural (a hand's wobble
  stays a wobble); a ``\\sqrt`` glyph is stretched over the whole radical (sign and
  vinculum), as people draw it.
* **Jitter.** Position (``position_jitter``), size (``size_jitter``, log-normal),
  slant (one per formula, ``slant``, plus ``glyph_slant`` per glyph) and a slow
  baseline wave (``baseline_drift``), all in symbol heights, all drawn from the
  formula's own seed. People leave more room between symbols than KaTeX does
  (the test-2014 sheet beside real handwriting shows it): each formula's
  horizontal positions are spread by a factor drawn from 1 to 1 + ``spread``;
  glyph sizes are kept, bars and radicals grow with what they cover.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from formula_gan.config import to_dict
from formula_gan.data.rasterize import SYMBOL_EM, RasterConfig
from formula_gan.data.symbol_bank import SymbolBank
from formula_gan.errors import FormulaGanError
from formula_gan.stitching.compose import BARS, Part, plan
from formula_gan.stitching.drawing import PlacedGlyph, Stitched, draw_glyphs, inkml
from formula_gan.stitching.hershey import HersheyGlyphs
from formula_gan.stitching.layout_stats import Deviation, LayoutModel, relations
from katex_render.boxes import SymbolBox

# Tokens drawn with another symbol's glyph: bars are a writer's minus sign.
GLYPH_OF = {bar: "-" for bar in BARS}
FLAT = 0.15  # a glyph less than this many symbol heights wide (or high) is flat that way
# Symbols that are small by nature: a dot is legible at any size its pen gives it.
LEGIBLE_ANY_SIZE = frozenset({".", ",", "\\cdot", "'", "\\prime", "-", "\\ldots", "\\cdots"})
HERSHEY_SYMBOL_HEIGHT = 21.0  # Hershey units from cap line to base line: one symbol height


@dataclass(frozen=True)
class Glyph:
    """A glyph's strokes (each [n, 2], its ink box from (0, 0)) and size, in symbol heights."""

    strokes: list[np.ndarray]
    width: float
    height: float


class StitchError(FormulaGanError):
    """A formula the bank cannot write (``reason`` names the missing token)."""


@dataclass(frozen=True)
class StitchConfig:
    # Rasterization, as prepare-crohme's (formula_gan.data.rasterize): height128 | symbol.
    normalize: Literal["height128", "symbol"] = "height128"
    pen_width: float | None = None  # None: the normalization's default pen
    padding: int = 8
    # KaTeX's font size when the boxes are measured: large enough that whole-pixel
    # boxes hold the layout within a few percent of a symbol.
    layout_px: int = 40
    # A glyph's aspect ratio changes at most by this factor to fit its box.
    aspect_limit: float = 1.5
    # Standard deviations, in symbol heights (slants: x shift per unit of height).
    position_jitter: float = 0.05
    size_jitter: float = 0.08
    slant: float = 0.1
    glyph_slant: float = 0.04
    baseline_drift: float = 0.05
    # Horizontal positions are multiplied by a factor drawn from [1, 1 + spread] per formula.
    spread: float = 0.25
    # Prefer one writer per formula (False: every glyph from a random writer).
    one_writer: bool = True
    # A symbol no writer of the bank has (nor can compose, see compose.py): drawn from the
    # fallback bank, else from a Hershey stroke font (True), or the formula is a reject (False).
    fallback: bool = True
    # Where glyphs go in their boxes: "jitter" uses the hand-set position_jitter, size_jitter and
    # spread above; "means" adds to them how CROHME's writers place symbols against KaTeX's layout
    # on average, per relation (scripts smaller and raised, fractions closer to the bar; measured
    # by layout_stats.py: the bank's layout.json, else the package's); "measured" draws each
    # formula's stretch and each symbol's size and height from the measured distributions instead.
    layout: Literal["jitter", "means", "measured"] = "means"
    # Smooth random warp of each glyph's strokes (symbol heights; 0: off).
    elastic: float = 0.0
    # Spread of the pen's width between formulas (log-normal sigma; 0: every formula the same pen).
    pen_jitter: float = 0.0
    # A formula whose smallest symbol (dots and bars aside) comes out less than this many pixels
    # high, the pen's width not counted, is a reject: below it a glyph is a blot (40 nested
    # fractions at height 128 are a black wedge), and a recognizer would learn noise from it.
    min_glyph_px: float = 4.0

    def __post_init__(self) -> None:
        if self.normalize not in ("height128", "symbol"):
            raise ValueError(f"normalize must be height128 or symbol, got {self.normalize!r}")
        if not 8 <= self.layout_px <= 200:
            raise ValueError(f"layout_px must be in 8..200, got {self.layout_px}")
        if not 1.0 <= self.aspect_limit <= 10.0:
            raise ValueError(f"aspect_limit must be in 1..10, got {self.aspect_limit}")
        if not 0.0 <= self.min_glyph_px <= 64.0:
            raise ValueError(f"min_glyph_px must be in 0..64, got {self.min_glyph_px}")
        if self.layout not in ("jitter", "means", "measured"):
            raise ValueError(f"layout must be jitter, means or measured, got {self.layout!r}")
        for name in ("position_jitter", "size_jitter", "slant", "glyph_slant", "baseline_drift", "spread", "elastic",
                     "pen_jitter"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        RasterConfig(normalize=self.normalize, pen_width=self.pen_width, padding=self.padding)  # its own checks

    def raster(self) -> RasterConfig:
        return RasterConfig(normalize=self.normalize, pen_width=self.pen_width, padding=self.padding)


# How CROHME's writers place symbols against KaTeX's layout (the training split, measured by
# prepare-symbols --measure-layout for the packaged bank), for banks without a measurement of
# their own (see layout_stats.py).
DEFAULT_LAYOUT = Path(__file__).resolve().parents[1] / "weights" / "symbols" / "layout.json"
LAYOUT_FILE = "layout.json"  # a bank's own measurement, beside its symbols.npz


def load_layout(bank: SymbolBank) -> LayoutModel:
    """The bank's own layout measurement (``layout.json`` beside it), else the package's."""
    path = Path(bank.path).parent / LAYOUT_FILE
    path = path if path.is_file() else DEFAULT_LAYOUT
    try:
        return LayoutModel(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValueError) as err:
        raise StitchError(f"{path}: not a usable layout measurement ({err})") from err


class Stitcher:
    """Writes formulas with glyphs of a symbol bank.

    >>> stitcher = Stitcher("datasets/prepared/symbols")
    >>> stitched = stitcher.stitch(tokens, boxes, seed=7)   # boxes: render_boxes(..., images=False)
    >>> stitched.image, stitched.boxes, stitched.writers

    The same tokens, boxes and seed give the same image. ``stitch_formulas`` in
    this package does the normalizing and the layout too.
    """

    def __init__(self, symbols: SymbolBank | str, config: StitchConfig | None = None,
                 fallback_bank: SymbolBank | str | None = None):
        self.bank = symbols if isinstance(symbols, SymbolBank) else SymbolBank(symbols)
        self.config = config or StitchConfig()
        self.fallback_bank = (fallback_bank if isinstance(fallback_bank, SymbolBank) or fallback_bank is None
                              else SymbolBank(fallback_bank))
        self.hershey = HersheyGlyphs()
        self.layout_model = load_layout(self.bank)
        # where a box's symbols may come from, in order (see plans)
        self._sources: list[tuple[str, Callable[[str], bool]]] = [("bank", self.bank.has)]
        if self.config.fallback:
            if self.fallback_bank is not None:
                fb = self.fallback_bank
                self._sources.append(("fallback-bank", lambda t: self.bank.has(t) or fb.has(t)))
            self._sources.append(("hershey", lambda t: self._any_bank_has(t) or self.hershey.has(t)))
        # writer x token: which writer wrote which symbol (to find one hand per formula)
        self._has = np.zeros((len(self.bank.writers), len(self.bank.tokens)), dtype=bool)
        self._has[self.bank.glyph_writer, self.bank.glyph_token] = True
        self._token_index = {t: i for i, t in enumerate(self.bank.tokens)}

    def identity(self) -> dict:
        """What decides the output, for job.json and the manifest."""
        ident = {"method": "stitch", "symbols": self.bank.digest, "glyphs": len(self.bank), "config": to_dict(self.config)}
        if self.fallback_bank is not None:
            ident["fallback_symbols"] = self.fallback_bank.digest
        return ident

    def _any_bank_has(self, token: str) -> bool:
        return self.bank.has(token) or (self.fallback_bank is not None and self.fallback_bank.has(token))

    # ---- which glyph for which box ------------------------------------------------------
    def plans(self, tokens: Sequence[str], boxes: Sequence[SymbolBox]) -> list[tuple[list[Part], str]]:
        """For every box, its parts (compose.plan) and their source, best first: the bank's own
        glyph (``bank``) or a composition of its glyphs (``composed``); with ``fallback``, the
        fallback bank's, then a Hershey glyph for what no bank has. Raises ``StitchError`` naming
        every token that cannot be drawn."""
        out, absent = self._plans(tokens, boxes)
        if absent:
            where = "in the symbol bank" + ("" if self.config.fallback else " (--no-fallback: no font glyphs)")
            raise StitchError(f"no glyph for token{'s' if len(absent) > 1 else ''} {' '.join(absent)} {where}")
        return out

    def missing(self, tokens: Sequence[str], boxes: Sequence[SymbolBox]) -> list[str]:
        """The boxed tokens that cannot be drawn (in order, once each)."""
        return self._plans(tokens, boxes)[1]

    def _plans(self, tokens: Sequence[str], boxes: Sequence[SymbolBox]) -> tuple[list[tuple[list[Part], str]], list[str]]:
        out, absent = [], []
        for b in boxes:
            box = (float(b.x0), float(b.y0), float(b.x1), float(b.y1))
            for source, drawable in self._sources:
                parts = plan(tokens, b.token, box, drawable)
                if parts is not None:
                    direct = len(parts) == 1 and parts[0].symbol == GLYPH_OF.get(tokens[b.token], tokens[b.token])
                    out.append((parts, "bank" if source == "bank" and direct else "composed" if source == "bank" else source))
                    break
            else:
                if tokens[b.token] not in absent:
                    absent.append(tokens[b.token])
        return out, absent

    def place(self, tokens: Sequence[str], boxes: Sequence[SymbolBox], seed: int) -> list[PlacedGlyph]:
        """A glyph (or the glyphs of a composition) for every box, fitted and jittered into it (layout px)."""
        if not boxes:
            raise StitchError("the formula draws no symbol")
        plans = self.plans(tokens, boxes)
        cfg = self.config
        rng = np.random.default_rng(seed)
        symbols = [p.symbol for parts, _ in plans for p in parts if self.bank.has(p.symbol)]
        writer = self._choose_writer(symbols, rng) if cfg.one_writer and symbols else None
        unit = SYMBOL_EM * cfg.layout_px  # px per symbol height in the layout
        slant = rng.normal(0.0, cfg.slant)
        left = min(b.x0 for b in boxes)
        width = max(b.x1 for b in boxes) - left
        period = max(width, 4 * unit) * rng.uniform(1.0, 2.5)
        phase = rng.uniform(0.0, 2 * math.pi)
        layout = self.layout_model.formula(rng, means=cfg.layout == "means") if cfg.layout != "jitter" else None
        spread = layout.stretch if cfg.layout == "measured" and layout is not None else rng.uniform(1.0, 1.0 + cfg.spread)
        rels = relations(tokens) if layout is not None else None
        placed = []
        for b, (parts, source) in zip(boxes, plans):
            strokes: list[np.ndarray] = []
            hands, first = [], -1
            deviation = layout.symbol(rels[b.token], rng) if layout is not None and rels is not None else None
            for part in parts:
                glyph, index, hand = self._pick(part.symbol, writer, rng)
                first = index if first < 0 else first
                hands.append(hand)
                strokes.extend(self._fit(part, glyph, unit, slant, rng, (left, spread), deviation))
            cx = (b.x0 + b.x1) / 2.0
            drift = cfg.baseline_drift * unit * math.sin(2 * math.pi * (cx - left) / period + phase)
            for st in strokes:
                st[:, 1] += drift
            label = parts[0].symbol if source == "bank" else tokens[b.token]
            placed.append(PlacedGlyph(b.token, label, hands[0], first, strokes, source))
        return placed

    def _pick(self, symbol: str, writer: int | None, rng: np.random.Generator) -> tuple[Glyph, int, str]:
        """A glyph of ``symbol``: the writer's where it has one, else any writer's of the bank,
        else the fallback bank's, else the Hershey font's."""
        for bank in (self.bank, self.fallback_bank):
            if bank is not None and bank.has(symbol):
                candidates = bank.indices(symbol, writer) if writer is not None and bank is self.bank else ()
                if len(candidates) == 0:
                    candidates = bank.indices(symbol)
                index = int(candidates[rng.integers(len(candidates))])
                w, h = (float(v) for v in bank.glyph_size[index])
                return Glyph(bank.strokes(index), w, h), index, bank.writers[bank.glyph_writer[index]]
        strokes = [st / HERSHEY_SYMBOL_HEIGHT for st in self.hershey.strokes(symbol)]
        w, h = self.hershey.size(symbol)
        return Glyph(strokes, w / HERSHEY_SYMBOL_HEIGHT, h / HERSHEY_SYMBOL_HEIGHT), -1, "hershey"

    def _choose_writer(self, symbols: Sequence[str], rng: np.random.Generator) -> int:
        """The writer with glyphs for the most distinct symbols of the formula (ties at random)."""
        needed = sorted({self._token_index[s] for s in symbols})
        covered = self._has[:, needed].sum(axis=1)  # [writers]
        best = np.flatnonzero(covered == covered.max())
        return int(best[rng.integers(len(best))])

    def _fit(self, part: Part, glyph: Glyph, unit: float, slant: float, rng: np.random.Generator,
             spread: tuple[float, float] = (0.0, 1.0), deviation: Deviation | None = None) -> list[np.ndarray]:
        """A glyph's strokes scaled into its part's box with jitter (layout px); x positions
        spread by ``spread`` = (origin, factor); ``deviation``: the measured layout's size and
        shift for this symbol (else the hand-set jitter)."""
        cfg = self.config
        gw, gh = glyph.width, glyph.height
        bx0, by0, bx1, by1 = part.box
        origin, factor = spread
        x0, x1 = origin + (bx0 - origin) * factor, origin + (bx1 - origin) * factor
        bw, bh = max(bx1 - bx0, 1.0), max(by1 - by0, 1.0)
        stretched = part.fit in ("bar", "radical")
        if stretched:
            bw = max(x1 - x0, 1.0)  # they cover what was spread
        grow = math.exp((deviation.size if deviation is not None else 0.0)
                        + (rng.normal(0.0, cfg.size_jitter) if deviation is None or deviation.means else 0.0))
        if part.fit == "bar":  # stretched over the bar, natural thickness
            sx, sy = bw / max(gw, FLAT), unit
        elif part.fit == "radical":  # stretched over sign and vinculum
            sx, sy = bw / max(gw, FLAT), bh / max(gh, FLAT)
        elif part.fit == "tall":  # a delimiter: the box's height, its own width (at most the box's)
            sy = bh / max(gh, FLAT)
            sx = min(sy, bw / max(gw, FLAT))
        elif gw < FLAT and gh < FLAT:  # a dot
            sx = sy = unit * grow
        elif gh < FLAT:  # -, \ldots: the width decides
            sx = sy = bw / gw * grow
        elif gw < FLAT:  # 1, |, l: the height decides
            sx = sy = bh / gh * grow
        else:
            fx, fy = bw / gw, bh / gh
            scale = math.sqrt(fx * fy) * grow
            ratio = min(max(fx / fy, 1.0 / cfg.aspect_limit), cfg.aspect_limit)
            sx, sy = scale * math.sqrt(ratio), scale / math.sqrt(ratio)
        lean = slant + rng.normal(0.0, cfg.glyph_slant)
        jitter = rng.normal(0.0, cfg.position_jitter * unit, size=2)
        if deviation is not None:
            # Measured vertical placement. Horizontally a writer's deviations from KaTeX are a
            # drift along the line (each symbol where the last one ended), not independent draws:
            # drawn per symbol they pile glyphs onto each other, so x keeps the hand-set jitter
            # and the measured per-formula stretch.
            jitter[1] = deviation.dy * unit + (jitter[1] if deviation.means else 0.0)
        if stretched or part.fit == "tall":
            jitter[0] = 0.0  # a bar, a radical or a delimiter must keep covering what it covers
        cx = (x0 + x1) / 2.0 + jitter[0]
        cy = (by0 + by1) / 2.0 + jitter[1]
        warp = _elastic(rng, cfg.elastic) if cfg.elastic > 0 and not stretched else None
        out = []
        for st in glyph.strokes:
            q = st.astype(np.float64)
            if warp is not None:
                q = q + warp(q / max(gw, gh, FLAT)) * max(gw, gh, FLAT)  # the warp is in glyph sizes
            p = (q - (gw / 2.0, gh / 2.0)) * (sx, sy)  # [n, 2] centred
            p[:, 0] -= lean * p[:, 1]  # y points down: a positive lean tilts the top to the right
            p += (cx, cy)
            out.append(p)
        return out

    # ---- drawing ------------------------------------------------------------------------------
    def draw(self, glyphs: Sequence[PlacedGlyph], latex: str = "", pen: float | None = None) -> Stitched:
        """Rasterize placed glyphs as prepare-crohme rasterizes CROHME, and box each glyph."""
        raster = self.config.raster()
        return draw_glyphs(glyphs, raster if pen is None else dataclasses.replace(raster, pen_width=pen), latex)

    def stitch(self, tokens: Sequence[str], boxes: Sequence[SymbolBox], seed: int, latex: str = "") -> Stitched:
        """``place`` then ``draw``. Raises ``StitchError`` naming a token the bank lacks."""
        pen = None
        if self.config.pen_jitter > 0:  # one pen per formula, drawn apart from the layout's randomness
            pen = self.config.raster().pen * math.exp(np.random.default_rng([seed, 1]).normal(0.0, self.config.pen_jitter))
        stitched = self.draw(self.place(tokens, boxes, seed), latex, pen)
        self._check_legible(stitched, pen if pen is not None else self.config.raster().pen)
        return stitched

    def _check_legible(self, stitched: Stitched, pen: float) -> None:
        sizes = [(b.y1 - b.y0 - pen - 1.0, g.symbol) for b, g in zip(stitched.boxes, stitched.glyphs)
                 if g.symbol not in LEGIBLE_ANY_SIZE]
        if sizes and min(sizes)[0] < self.config.min_glyph_px:
            size, symbol = min(sizes)
            raise StitchError(f"illegible: {symbol} comes out {max(size, 0.0):.1f} px high (stitch.min_glyph_px is "
                              f"{self.config.min_glyph_px:g}) in a {stitched.image.shape[1]}x{stitched.image.shape[0]} image")

    def inkml(self, stitched: Stitched, latex: str) -> bytes:
        """The strokes as InkML (``drawing.inkml``): the online form of the sample."""
        return inkml(stitched, latex)


def _elastic(rng: np.random.Generator, amplitude: float):
    """A smooth random displacement of a glyph's points (as fractions of its size): a sum of
    two low-frequency sine waves per axis, of ``amplitude`` (symbol heights) at most."""
    freq = rng.uniform(0.5, 1.5, size=(2, 2))
    phase = rng.uniform(0.0, 2 * math.pi, size=(2, 2))
    amp = rng.uniform(-amplitude, amplitude, size=(2, 2)) / 2.0

    def warp(p: np.ndarray) -> np.ndarray:  # [n, 2] -> [n, 2]
        dx = amp[0, 0] * np.sin(2 * math.pi * freq[0, 0] * p[:, 1] + phase[0, 0]) + amp[0, 1] * np.sin(
            2 * math.pi * freq[0, 1] * p[:, 0] + phase[0, 1])
        dy = amp[1, 0] * np.sin(2 * math.pi * freq[1, 0] * p[:, 0] + phase[1, 0]) + amp[1, 1] * np.sin(
            2 * math.pi * freq[1, 1] * p[:, 1] + phase[1, 1])
        return np.stack([dx, dy], axis=1)

    return warp
