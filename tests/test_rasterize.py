"""Rasterization: sizes, aspect, padding, pen width, anti-aliasing, symbol-height normalization."""

from __future__ import annotations

import numpy as np
import pytest

from formula_gan.data.inkml import Ink
from formula_gan.data.rasterize import (
    HEIGHT,
    SYMBOL_HEIGHT_PX,
    RasterConfig,
    rasterize,
    symbol_height,
)


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)


def ink_bbox(img: np.ndarray, thr: int = 250) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(img < thr)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def three_symbols(scale: float = 1.0) -> Ink:
    """Three 10x10 squares side by side, each its own trace group."""
    strokes = [box(i * 20 * scale, 0, (i * 20 + 10) * scale, 10 * scale) for i in range(3)]
    return Ink(strokes, "a b c", [(c, [str(i)]) for i, c in enumerate("abc")], ["0", "1", "2"])


@pytest.mark.parametrize("mode", ["height128", "symbol"])
def test_output_is_paper_and_keeps_aspect(mode: str) -> None:
    img, info = rasterize(three_symbols(), RasterConfig(normalize=mode, pen_width=2, padding=8))
    assert img.dtype == np.uint8 and img.ndim == 2
    assert img.max() == 255 and img.min() < 40  # white paper, dark ink
    if mode == "height128":
        assert img.shape[0] == HEIGHT
    x0, y0, x1, y1 = ink_bbox(img)
    # content is 50 x 10 units plus the pen: aspect kept within a couple of pixels
    assert abs((x1 - x0 + 1 - 2) / (y1 - y0 + 1 - 2) - 5.0) < 0.35
    # padding: the outermost ink pixel is about `padding` px from the border (pen edge blur: 1 px)
    assert min(x0, y0, img.shape[1] - 1 - x1, img.shape[0] - 1 - y1) >= 7


def test_coordinate_scale_does_not_matter() -> None:
    """CROHME sources differ in units by 10^4: the same ink at any scale gives the same image."""
    for mode in ("height128", "symbol"):
        a, _ = rasterize(three_symbols(1.0), RasterConfig(normalize=mode))
        b, _ = rasterize(three_symbols(1000.0), RasterConfig(normalize=mode))
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_symbol_normalization_hits_reference_height() -> None:
    img, info = rasterize(three_symbols(7.3), RasterConfig(normalize="symbol", pen_width=1))
    x0, y0, x1, y1 = ink_bbox(img, thr=128)
    assert info["symbol_estimate"] == "groups"
    assert abs((y1 - y0 + 1) - SYMBOL_HEIGHT_PX) <= 2.0  # 20.6 px symbols (+- pen and rounding)


def test_symbol_height_falls_back_to_strokes() -> None:
    ink = three_symbols()
    ink.trace_groups = []
    h, how = symbol_height(ink)
    assert how == "strokes" and abs(h - 10 * 0.97) < 1e-6
    # flat symbols are left out of the group median
    ink = three_symbols()
    ink.strokes.append(np.array([[0.0, 30.0], [40.0, 30.0]]))
    ink.trace_ids.append("3")
    ink.trace_groups.append(("-", ["3"]))
    assert symbol_height(ink) == (10.0, "groups")


def test_pen_width_and_antialiasing() -> None:
    thin, _ = rasterize(three_symbols(), RasterConfig(pen_width=1.5))
    thick, _ = rasterize(three_symbols(), RasterConfig(pen_width=5))
    ink = lambda a: (255 - a.astype(float)).sum()  # noqa: E731
    assert ink(thick) > 2.5 * ink(thin)
    t = np.linspace(0, 2 * np.pi, 60)
    ring = Ink([np.stack([50 + 40 * np.cos(t), 50 + 40 * np.sin(t)], axis=1)], "o")
    round_thin, _ = rasterize(ring, RasterConfig(pen_width=1.5))
    grays = np.unique(round_thin[(round_thin > 20) & (round_thin < 235)])
    assert len(grays) >= 8  # anti-aliased edges on a curve, not a binary image


def test_flat_expression_is_not_blown_up() -> None:
    minus = Ink([np.array([[0.0, 0.0], [100.0, 0.0]])], "-")
    img, _ = rasterize(minus, RasterConfig(normalize="height128"))
    assert img.shape[0] == HEIGHT and img.shape[1] < 16 * HEIGHT + 40
    x0, y0, x1, y1 = ink_bbox(img)
    assert y1 - y0 < 8  # the stroke stays a pen-wide line, centered
    assert abs((y0 + y1) / 2 - HEIGHT / 2) < 3


def test_dots_are_drawn() -> None:
    dotted = Ink([np.array([[0.0, 0.0], [0.0, 50.0]]), np.array([[0.0, -20.0]])], "i")
    img, _ = rasterize(dotted, RasterConfig(normalize="height128"))
    x0, y0, x1, y1 = ink_bbox(img)
    assert y0 <= 12  # the dot at the top is there


def test_bad_config() -> None:
    with pytest.raises(ValueError):
        RasterConfig(normalize="width64")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RasterConfig(pen_width=0)
