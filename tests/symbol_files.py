"""Small InkML files with symbol segmentation, written by the tests (no corpus needed):
simple pen strokes per symbol, several writers, two tablet scales."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Strokes of each symbol in a unit box (x right, y down, 1 = one symbol height).
def _arc(x0: float, x1: float, flip: bool) -> list[tuple[float, float]]:
    pts = []
    for k in range(9):
        t = math.pi * (0.2 + 0.6 * k / 8)
        x = x0 + (x1 - x0) * (1 - math.sin(t)) if not flip else x1 - (x1 - x0) * (1 - math.sin(t))
        pts.append((x, 0.5 - 0.55 * math.cos(t)))
    return pts


SHAPES: dict[str, list[list[tuple[float, float]]]] = {
    "x": [[(0.0, 0.3), (0.5, 1.0)], [(0.5, 0.3), (0.0, 1.0)]],
    "y": [[(0.0, 0.3), (0.25, 0.7)], [(0.5, 0.3), (0.1, 1.3)]],
    "a": [[(0.45, 0.4), (0.1, 0.45), (0.05, 0.9), (0.4, 0.95), (0.45, 0.4), (0.5, 1.0)]],
    "b": [[(0.05, 0.0), (0.05, 1.0), (0.4, 0.95), (0.45, 0.6), (0.05, 0.55)]],
    "1": [[(0.1, 0.2), (0.25, 0.0), (0.25, 1.0)]],
    "2": [[(0.0, 0.2), (0.3, 0.0), (0.5, 0.3), (0.0, 1.0), (0.55, 1.0)]],
    "+": [[(0.0, 0.5), (0.6, 0.5)], [(0.3, 0.2), (0.3, 0.8)]],
    "-": [[(0.0, 0.5), (0.6, 0.52)]],
    "=": [[(0.0, 0.4), (0.6, 0.4)], [(0.0, 0.65), (0.6, 0.65)]],
    "(": [_arc(0.0, 0.25, False)],
    ")": [_arc(0.0, 0.25, True)],
    "\\sqrt": [[(0.0, 0.6), (0.15, 0.5), (0.3, 1.0), (0.5, 0.0), (1.5, 0.0)]],
    "\\lt": [[(0.5, 0.3), (0.0, 0.6), (0.5, 0.9)]],
}


def inkml(glyphs: list[tuple[str, list[list[tuple[float, float]]]]], *, writer: str | None = None,
          scale: float = 100.0, truth: str = "$x$", wobble: float = 0.0, seed: int = 0) -> str:
    """One InkML file: the glyphs side by side, each a trace group labelled by its symbol."""
    rng = np.random.default_rng(seed)
    traces, groups = [], []
    for i, (label, strokes) in enumerate(glyphs):
        refs = []
        for stroke in strokes:
            pts = np.array(stroke, dtype=float) + rng.normal(0, wobble, size=(len(stroke), 2))
            pts = (pts + (1.2 * i, 0.0)) * scale
            refs.append(len(traces))
            traces.append(f'<trace id="{len(traces)}">' + ", ".join(f"{x:.4f} {y:.4f}" for x, y in pts) + "</trace>")
        views = "".join(f'<traceView traceDataRef="{r}"/>' for r in refs)
        groups.append(f'<traceGroup xml:id="g{i}"><annotation type="truth">{label}</annotation>{views}</traceGroup>')
    who = f'<annotation type="writer">{writer}</annotation>' if writer else ""
    return ('<ink xmlns="http://www.w3.org/2003/InkML">'
            f'<annotation type="truth">{truth}</annotation>{who}' + "".join(traces)
            + '<traceGroup xml:id="s"><annotation type="truth">Segmentation</annotation>' + "".join(groups)
            + "</traceGroup></ink>")


def write_symbol_files(root: Path) -> Path:
    """Files of three hands: w1 wrote every symbol twice, w2 all but \\sqrt, one file
    has no writer (MathBrush-like), one is at a tablet scale 10,000 times smaller."""
    root.mkdir(parents=True, exist_ok=True)
    everything = list(SHAPES.items())
    no_root = [(k, v) for k, v in everything if k != "\\sqrt"]
    (root / "w1_a.inkml").write_text(inkml(everything, writer="w1", seed=1, wobble=0.01), encoding="utf-8")
    (root / "w1_b.inkml").write_text(inkml(everything, writer="w1", seed=2, wobble=0.01), encoding="utf-8")
    (root / "w2_a.inkml").write_text(inkml(no_root, writer="w2", scale=0.01, seed=3, wobble=0.02), encoding="utf-8")
    (root / "anon.inkml").write_text(inkml(everything[:6], seed=4, wobble=0.02), encoding="utf-8")
    return root
