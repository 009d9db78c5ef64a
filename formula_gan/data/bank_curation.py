"""Choosing the glyphs of a symbol bank: outliers left out, whole writers kept.

**Outliers.** CROHME's segmentation and symbol labels are mostly right, but not
always: a group holding half a symbol, or two, or a label of the wrong symbol (one
writer's ``=`` reads as ``:``). Each glyph is drawn small (``SIDE`` px, its aspect
kept, centred) and compared with its token's median drawing; a glyph whose
distance is far above its token's typical distance (a robust z-score over
``OUTLIER_Z``) is left out and counted (the aspect ratio alone is not a reason: a
long minus is still a minus). Tokens with few glyphs (under ``MIN_FOR_OUTLIERS``) are left as they are:
there is no "typical" to compare with.

**Whole writers** (the small bank the package ships). A formula is written in one
hand where its writer has every symbol, so the bank keeps all the glyphs of the
writers it keeps: chosen greedily, each next writer the one who adds most tokens
not yet covered (ties: more tokens in all, then fewer glyphs, so that a megabyte
holds more hands, then a seeded order), until ``writers`` are
chosen; then every token with fewer than ``min_per_token`` glyphs is topped up with
glyphs of other writers (seeded), so that rare symbols still vary.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from formula_gan.data.rasterize import draw_strokes
from formula_gan.data.symbol_bank import Glyph

SIDE = 20  # px of the small drawing each glyph is compared by
# Robust z-score of the distance to the token's median drawing above which a glyph is out. At 4,
# whole allographs went (a cursive x, written by a few writers), at 6 half-symbols and other
# symbols are still caught (measured on CROHME train: see the module docstring).
OUTLIER_Z = 4.0
MIN_FOR_OUTLIERS = 20


@dataclass
class Curation:
    kept: list[Glyph]
    outliers: dict[str, int]  # token -> glyphs left out for their shape
    writers: list[str]  # the whole writers kept (empty: all were)
    topped_up: dict[str, int]  # token -> glyphs added from other writers


def drawing(glyph: Glyph) -> np.ndarray:
    """The glyph drawn into SIDE x SIDE px (aspect kept, centred), ink = 1, as a float vector."""
    pts = np.concatenate(glyph.strokes)
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1e-6)
    scale = (SIDE - 4) / extent
    offset = (SIDE - np.ptp(pts, axis=0) * scale) / 2 - pts.min(axis=0) * scale
    strokes = [s.astype(np.float64) * scale + offset for s in glyph.strokes]
    paper = draw_strokes(strokes, SIDE, SIDE, 1.5)
    return (255.0 - paper.astype(np.float64)).ravel() / 255.0


def outliers(glyphs: Sequence[Glyph]) -> set[int]:
    """Indices of the glyphs whose shape is far from their token's others (see the module docstring)."""
    by_token: dict[str, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(glyphs):
        by_token[g.token].append(i)
    out: set[int] = set()
    for token, idx in by_token.items():
        if len(idx) < MIN_FOR_OUTLIERS:
            continue
        pictures = np.stack([drawing(glyphs[i]) for i in idx])  # [n, SIDE*SIDE]
        distance = np.linalg.norm(pictures - np.median(pictures, axis=0), axis=1)
        out.update(i for i, z in zip(idx, _robust_z(distance)) if z > OUTLIER_Z)
    return out


def _robust_z(values: np.ndarray) -> np.ndarray:
    """(value - median) / (1.4826 * median absolute deviation); 0 where the spread is 0."""
    med = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - med))
    if mad <= 0:
        return np.zeros_like(values)
    return (values - med) / mad


def choose_writers(glyphs: Sequence[Glyph], writers: int, min_per_token: int, seed: int = 0) -> Curation:
    """Whole writers covering the tokens, topped up per rare token (see the module docstring)."""
    by_writer: dict[str, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(glyphs):
        if not g.writer.startswith("file:"):  # a file without a writer is nobody's whole hand
            by_writer[g.writer].append(i)
    tokens_of = {w: {glyphs[i].token for i in idx} for w, idx in by_writer.items()}
    rank = {w: hashlib.sha256(f"{seed}\0{w}".encode()).hexdigest() for w in by_writer}
    chosen: list[str] = []
    covered: set[str] = set()
    candidates = set(by_writer)
    while candidates and len(chosen) < writers:
        # most new tokens; then most tokens in all (a varied hand); then fewer glyphs (more hands
        # per megabyte: some writers wrote 200 formulas); then the seeded order
        best = max(candidates, key=lambda w: (len(tokens_of[w] - covered), len(tokens_of[w]), -len(by_writer[w]), rank[w]))
        chosen.append(best)
        covered |= tokens_of[best]
        candidates.discard(best)
    keep = {i for w in chosen for i in by_writer[w]}
    counts = collections.Counter(glyphs[i].token for i in keep)
    rng = np.random.default_rng(seed)
    topped: dict[str, int] = {}
    spare: dict[str, list[int]] = collections.defaultdict(list)
    for i, g in enumerate(glyphs):
        if i not in keep:
            spare[g.token].append(i)
    for token in sorted({g.token for g in glyphs}):
        need = min_per_token - counts[token]
        if need > 0 and spare[token]:
            picked = rng.permutation(np.array(spare[token]))[:need]
            keep.update(int(i) for i in picked)
            topped[token] = len(picked)
    return Curation([glyphs[i] for i in sorted(keep)], {}, chosen, topped)
