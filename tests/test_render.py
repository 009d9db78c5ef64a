"""The batched renderer, on real Chromium and real KaTeX: image properties, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from katex_render.browser import find_chromium
from katex_render.errors import KatexRenderError
from katex_render.renderer import Renderer
from katex_render.sheets import crop_sheet
from katex_render.styles import Style, StyleConfig, sample_style

pytestmark = pytest.mark.browser

FORMULAS = [
    r"\frac{a}{b}+\sqrt{x^2+1}",
    r"\sum_{i=1}^{n} i^2 = \frac{n(n+1)(2n+1)}{6}",
    r"\int_0^\infty e^{-x^2} dx",
    r"\lim_{x \to 0} \frac{\sin x}{x} = 1",
    r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}",
    r"\alpha\beta\gamma",
    r"x",
    r"E = m c^2",
]


def require_browser() -> None:
    try:
        find_chromium()
    except KatexRenderError as err:
        pytest.skip(f"no browser found: {err}")


@pytest.fixture(scope="module")
def renderer():
    require_browser()
    with Renderer(workers=1, batch_size=16) as r:
        yield r


def ink_bbox(image: np.ndarray, threshold: int = 250) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((image < threshold).any(axis=1))
    cols = np.flatnonzero((image < threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_images_are_dark_ink_on_white_cropped_tight_then_padded(renderer):
    styles = [Style(font, size, pad) for font, size, pad in
              [("\\mathrm", 32, 0), ("\\mathsf", 20, 7), ("\\mathbf", 45, 15), ("\\textstyle", 24, 3),
               ("\\mathtt", 16, 1), ("\\mathit", 50, 12), ("\\mathnormal", 28, 5), ("\\mathrm", 36, 9)]]
    results = renderer.render(list(zip(FORMULAS, styles)))
    for (image, error), style in zip(results, styles):
        assert error is None and image is not None
        assert image.dtype == np.uint8 and image.ndim == 2
        assert image.min() < 60, "ink is dark"
        assert np.median(image) == 255, "paper is white"
        top, bottom, left, right = ink_bbox(image)
        p = style.padding
        assert (top, left) == (p, p), "ink starts exactly after the padding"
        assert (image.shape[0] - 1 - bottom, image.shape[1] - 1 - right) == (p, p), "and ends exactly before it"
        if p:
            assert (image[:p] == 255).all() and (image[-p:] == 255).all()
            assert (image[:, :p] == 255).all() and (image[:, -p:] == 255).all()


def test_one_css_pixel_is_one_image_pixel(renderer):
    page = renderer._pages[0].page

    async def ratio():
        return await page.evaluate("() => [window.devicePixelRatio, document.compatMode]")

    assert renderer._call(ratio()) == [1, "CSS1Compat"]  # no scaling; standards mode (KaTeX needs it)


def test_bigger_font_gives_a_proportionally_bigger_image(renderer):
    formula = r"\frac{x+1}{y}"
    (small, _), (big, _) = renderer.render([(formula, Style("\\mathrm", 20, 0)), (formula, Style("\\mathrm", 40, 0))])
    assert 1.8 < big.shape[0] / small.shape[0] < 2.2
    assert 1.8 < big.shape[1] / small.shape[1] < 2.2


def test_fonts_change_the_pixels(renderer):
    images = [renderer.render([("ABC+x", Style(font, 30, 0))])[0][0] for font in ("\\mathrm", "\\mathsf", "\\mathtt")]
    assert images[0].shape != images[1].shape or not np.array_equal(images[0], images[1])
    assert images[1].shape != images[2].shape or not np.array_equal(images[1], images[2])


def test_same_pixels_wherever_a_formula_lands(renderer):
    """Batch composition, sheet position and page do not change a formula's image
    (what makes resumed and split jobs byte-identical)."""
    cfg = StyleConfig()
    items = [(FORMULAS[i % len(FORMULAS)], sample_style(cfg, i)) for i in range(40)]
    together = renderer.render(items)
    alone = [renderer.render([item])[0] for item in items[::7]]
    for (a, _), (b, _) in zip(together[::7], alone):
        assert np.array_equal(a, b)
    shuffled = renderer.render(items[::-1])[::-1]
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(together, shuffled))


def test_bad_formulas_get_reasons_and_do_not_disturb_the_others(renderer):
    items = [(r"\frac{a}{b}", Style("\\mathrm", 30, 2)),
             (r"\undefinedcommand{x}", Style("\\mathrm", 30, 2)),
             (r"x^{", Style("\\mathrm", 30, 2)),
             (r"\phantom{x}", Style("\\mathrm", 30, 2)),
             (r"a+b", Style("\\mathrm", 30, 2))]
    results = renderer.render(items)
    assert results[0][0] is not None and results[4][0] is not None
    assert results[1][0] is None and "Undefined control sequence" in results[1][1]
    assert results[2][0] is None and results[2][1].startswith("KaTeX:")
    assert results[3] == (None, "renders no visible ink")
    assert np.array_equal(results[0][0], renderer.render(items[:1])[0][0])


def test_many_sheets_and_oversize_formulas(renderer):
    """A batch larger than a sheet spills onto more sheets; a formula wider than the
    page gets a sheet of its own; the pixels are the same as on a roomy page."""
    cfg = StyleConfig(font_size=(30, 40))
    long_formula = " + ".join(f"x_{{{i}}}^{{2}}" for i in range(15))
    items = [(FORMULAS[i % len(FORMULAS)], sample_style(cfg, i)) for i in range(30)]
    items.insert(5, (long_formula, Style("\\mathrm", 40, 3)))
    with Renderer(workers=1, batch_size=64, page_width=400, sheet_height=300) as small:
        cramped = small.render(items)
    roomy = renderer.render(items)  # 1800 x 2000 sheets
    assert cramped[5][0].shape[1] > 400 + 6
    for (a, ea), (b, eb) in zip(cramped, roomy):
        assert ea is None and eb is None
        assert np.array_equal(a, b)


def test_crop_sheet_pads_and_reports_blank():
    sheet = np.full((50, 80), 255, np.uint8)  # [h, w]
    sheet[10:20, 30:35] = 0
    image, error = crop_sheet(sheet, {"x": 20, "y": 5, "w": 40, "h": 30}, 4, 250)
    assert error is None and image.shape == (10 + 8, 5 + 8)
    assert (image[4:-4, 4:-4] == 0).all() and image.sum() == 255 * (image.size - 50)
    assert crop_sheet(sheet, {"x": 0, "y": 0, "w": 20, "h": 20}, 4, 250) == (None, "renders no visible ink")


def test_unstarted_renderer_and_bad_style_are_clear_errors():
    require_browser()
    r = Renderer(workers=1)
    with pytest.raises(KatexRenderError, match="not started"):
        r.render([("x", Style("\\mathrm", 20, 0))])
    with pytest.raises(KatexRenderError, match="font command"):
        r.render([("x", Style("\\mathzz", 20, 0))])
