"""Per-symbol boxes from the renderer, on real Chromium and KaTeX: one box per visible
symbol, tied to its token index, holding its ink, in the final image's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from katex_render.boxes import boxed_latex
from katex_render.normalize import Normalizer, tokens_to_latex
from katex_render.renderer import Renderer
from katex_render.styles import Style
from test_render import require_browser

pytestmark = pytest.mark.browser

# Tokens that draw nothing themselves.
SILENT = {"{", "}", "^", "_", "\\left", "\\right", "\\text", "\\mathrm", "&", "\\\\", "[", "]",
          "\\big", "\\Big", "\\bigg", "\\Bigg"}
FORMULAS = [
    r"\frac{a}{b}+\sqrt{x^2+1}",
    r"\sum_{i=1}^{n} i^2 = \frac{n(n+1)}{2}",
    r"\int_0^\infty e^{-x^2} dx",
    r"\lim_{x \to 0} \frac{\sin x}{x} = 1",
    r"\left( x \right)^2 \neq \ldots",
    r"f'(x) \leq \text{ab} \operatorname{arcsin} x",
    r"\sqrt[3]{y} \hat{x} \Bigg( a \Bigg) \vec{v}_1",
    r"\{ 12 + 34 \} \cdot \alpha \beta",
    r"\widehat{AB} + \overline{xy} \rightarrow \infty",
    r"a_{i_j}^{2} \times \pi \div 3 \pm 1 \geq 0",
]
FONTS = ["\\mathnormal", "\\mathrm", "\\mathsf", "\\mathtt", "\\mathbf", "\\mathit", "\\textstyle"]


@pytest.fixture(scope="module")
def renderer():
    require_browser()
    with Renderer(workers=1, batch_size=64) as r:
        yield r


@pytest.fixture(scope="module")
def tokens():
    with Normalizer() as n:
        out = n.normalize(FORMULAS)
    assert all(t is not None for t, _ in out), out
    return [t for t, _ in out]


def ink(image: np.ndarray, threshold: int = 250) -> np.ndarray:
    return image < threshold


def test_every_visible_symbol_has_exactly_one_box(renderer, tokens):
    results = renderer.render_boxes([(t, Style("\\mathnormal", 32, 3)) for t in tokens])
    for toks, r in zip(tokens, results):
        assert r.error is None and r.boxes_error is None, (toks, r.error, r.boxes_error)
        boxed = [b.token for b in r.boxes]
        assert len(boxed) == len(set(boxed)), f"a token with two boxes in {toks}"
        expected = {i for i, t in enumerate(toks) if t not in SILENT}
        # \operatorname's and \text's own command tokens draw nothing; their letters do
        expected -= {i for i, t in enumerate(toks) if t in ("\\operatorname",)}
        assert set(boxed) == expected, (toks, [toks[i] for i in set(boxed) ^ expected])


def test_delimiters_radicals_and_fraction_bars_are_boxed_on_their_own_tokens(renderer):
    toks = "\\left ( \\frac { 1 } { x } \\right ) ^ { 2 } + \\sqrt { y }".split()
    [r] = renderer.render_boxes([(toks, Style("\\mathnormal", 40, 0))])
    box = {toks[b.token] + f"@{b.token}": b for b in r.boxes}
    assert set(box) == {"(@1", "\\frac@2", "1@4", "x@7", ")@10", "2@13", "+@15", "\\sqrt@16", "y@18"}
    bar, one, x = box["\\frac@2"], box["1@4"], box["x@7"]
    assert bar.y1 - bar.y0 <= 3, "a fraction bar is a thin rule"
    assert one.y1 <= bar.y0 + 1 and x.y0 >= bar.y1 - 1, "numerator above the bar, denominator below"
    assert bar.x0 <= one.x0 and bar.x1 >= x.x1, "the bar spans both"
    left, right = box["(@1"], box[")@10"]
    assert left.x1 <= bar.x0 + 1 and right.x0 >= bar.x1 - 1, "the delimiters flank the fraction"
    assert left.y1 - left.y0 >= x.y1 - one.y0 - 2, "and grow to its height"
    assert box["2@13"].y1 < right.y1 and box["2@13"].x0 >= right.x1 - 1, "the exponent sits up right of ')'"
    root, y = box["\\sqrt@16"], box["y@18"]
    assert root.x0 < y.x0 and root.x1 >= y.x1 and root.y0 < y.y0, "the radical covers its argument"


def test_boxes_match_the_ink_components_of_the_image(renderer):
    # Formulas where every symbol is one connected blob of ink, apart from its
    # neighbours: each blob's bounding box (found in the pixels, not in the DOM) must
    # be the box of exactly one token, within a pixel.
    cases = ["x ^ { 2 } - 1", "\\frac { a } { b } + c", "( k ) + \\alpha", "1 2 3 + y _ { 4 }"]
    results = renderer.render_boxes([(c.split(), Style("\\mathnormal", 48, 2)) for c in cases])
    for case, r in zip(cases, results):
        blobs = components(ink(r.image))
        assert len(blobs) == len(r.boxes), (case, blobs, r.boxes)
        for x0, y0, x1, y1 in blobs:
            near = [b for b in r.boxes if abs(b.x0 - x0) <= 1 and abs(b.y0 - y0) <= 1
                    and abs(b.x1 - x1) <= 1 and abs(b.y1 - y1) <= 1]
            assert len(near) == 1, (case, (x0, y0, x1, y1), r.boxes)


@pytest.mark.parametrize("font", FONTS)
def test_boxes_hold_the_ink(renderer, tokens, font):
    results = renderer.render_boxes([(t, Style(font, 30, 4)) for t in tokens])
    for toks, r in zip(tokens, results):
        assert r.boxes, (toks, r.boxes_error)
        covered = np.zeros(r.image.shape, dtype=bool)
        for b in r.boxes:
            # one pixel of slack: anti-aliasing reaches a pixel past the outline
            covered[max(0, b.y0 - 1):b.y1 + 1, max(0, b.x0 - 1):b.x1 + 1] = True
            assert ink(r.image, 200)[b.y0:b.y1, b.x0:b.x1].any(), f"box of {toks[b.token]} holds no ink ({font})"
        stray = ink(r.image, 200) & ~covered
        assert not stray.any(), f"{stray.sum()} ink pixels outside every box in {tokens_to_latex(toks)} ({font})"


def test_boxes_survive_cropping_and_padding(renderer, tokens):
    for toks in tokens[:4]:
        plain, padded = renderer.render_boxes([(toks, Style("\\mathrm", 36, 0)), (toks, Style("\\mathrm", 36, 11))])
        assert padded.image.shape == (plain.image.shape[0] + 22, plain.image.shape[1] + 22)
        assert [(b.token, b.x0 + 11, b.y0 + 11, b.x1 + 11, b.y1 + 11) for b in plain.boxes] == \
            [(b.token, b.x0, b.y0, b.x1, b.y1) for b in padded.boxes]
        # the tight crop starts where the ink starts: the boxes' union meets the frame (the
        # outlines' bounds and the anti-aliased pixels agree within two pixels)
        x0 = min(b.x0 for b in plain.boxes)
        y0 = min(b.y0 for b in plain.boxes)
        x1 = max(b.x1 for b in plain.boxes)
        y1 = max(b.y1 for b in plain.boxes)
        assert -2 <= x0 <= 0 and -2 <= y0 <= 0, (x0, y0)
        assert abs(x1 - plain.image.shape[1]) <= 2 and abs(y1 - plain.image.shape[0]) <= 2


def test_boxes_do_not_change_the_image(renderer, tokens):
    for font in FONTS:
        style = Style(font, 34, 5)
        boxed = renderer.render_boxes([(t, style) for t in tokens])
        plain = renderer.render([(tokens_to_latex(t), style) for t in tokens])
        for toks, b, (image, _) in zip(tokens, boxed, plain):
            assert b.image.shape == image.shape and (b.image == image).all(), (font, tokens_to_latex(toks))


def test_measuring_without_a_capture_gives_the_same_boxes(renderer, tokens):
    style = Style("\\mathsf", 28, 6)
    captured = renderer.render_boxes([(t, style) for t in tokens])
    measured = renderer.render_boxes([(t, style) for t in tokens], images=False)
    for toks, c, m in zip(tokens, captured, measured):
        assert m.image is None and m.boxes is not None
        assert abs(m.size[0] - c.image.shape[0]) <= 1 and abs(m.size[1] - c.image.shape[1]) <= 1
        assert [b.token for b in m.boxes] == [b.token for b in c.boxes]
        shift = (m.boxes[0].x0 - c.boxes[0].x0, m.boxes[0].y0 - c.boxes[0].y0)
        for a, b in zip(c.boxes, m.boxes):
            assert abs(b.x0 - a.x0 - shift[0]) <= 1 and abs(b.y1 - a.y1 - shift[1]) <= 1, toks


def test_tokens_not_in_normalized_form_render_without_boxes(renderer):
    # "x^2" is not a normalized token sequence; "\\frac {" is not LaTeX at all
    plain, broken, good = renderer.render_boxes([(["x^2"], Style("\\mathrm", 30, 2)),
                                                 (["\\frac", "{"], Style("\\mathrm", 30, 2)),
                                                 (["y"], Style("\\mathrm", 30, 2))])
    assert plain.image is not None and plain.boxes is None and "normalized" in plain.boxes_error
    assert broken.image is None and broken.error.startswith("KaTeX")
    assert [b.token for b in good.boxes] == [0], "the batch goes on after the bad ones"
    with pytest.raises(TypeError):
        renderer.render_boxes([("x ^ 2", Style("\\mathrm", 30, 2))])  # a string, not tokens


def test_boxed_latex_is_what_the_render_job_renders():
    toks = ["\\text", "{", "a", "b", "}", "+", "x", "_", "{", "1", "}"]
    latex, starts = boxed_latex(toks, Style("\\mathbf", 20, 0))
    assert latex == "\\mathbf{" + tokens_to_latex(toks) + "}"
    assert [latex[s:s + len(t)] for s, t in zip(starts, toks)] == toks
    latex, starts = boxed_latex(toks, Style("\\textstyle", 20, 0))
    assert latex.startswith("{\\textstyle ") and [latex[s:s + len(t)] for s, t in zip(starts, toks)] == toks


def test_hostile_tokens_make_no_request(renderer):
    before = len(renderer.events)
    results = renderer.render_boxes([("\\url { http://example.com/leak }".split(), Style("\\mathrm", 30, 0)),
                                     ("\\href { http://example.com/x } { y }".split(), Style("\\mathrm", 30, 0))])
    assert len(results) == 2
    assert renderer.events[before:] == []


def components(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Bounding boxes [x0, x1) x [y0, y1) of the 8-connected blobs of a mask."""
    seen = np.zeros_like(mask)
    out = []
    h, w = mask.shape
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        stack, xs, ys = [(y, x)], [], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            xs.append(cx)
            ys.append(cy)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        out.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return out



def test_render_job_stores_boxes_in_the_sample_json(tmp_path, capsys):
    from formula_gan.cli import main
    from formula_gan.data.shards import read_shard

    require_browser()
    corpus = tmp_path / "f.txt"
    corpus.write_text("x^2+\\frac{1}{2}\n\\left(a\\right)\n\\sqrt{y}\n", encoding="utf-8")
    args = ["render", str(corpus), "--workers", "1", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert main(args + ["--out", str(tmp_path / "boxed"), "--boxes"]) == 0
    plain = {s.key: s for s in read_shard(tmp_path / "plain" / "shard-000000.tar")}
    boxed = {s.key: s for s in read_shard(tmp_path / "boxed" / "shard-000000.tar")}
    assert plain.keys() == boxed.keys() and len(boxed) == 3
    for key, sample in boxed.items():
        assert sample.png == plain[key].png, "the boxes do not change the image"
        assert "boxes" not in plain[key].meta
        tokens = sample.meta["tokens"].split()
        rows = sample.meta["boxes"]
        assert rows and all(len(r) == 5 and 0 <= r[0] < len(tokens) for r in rows)
        assert {tokens[r[0]] for r in rows} <= set(tokens) - SILENT
    # a folder holding the job without boxes is not resumed with them
    assert main(args + ["--out", str(tmp_path / "plain"), "--boxes"]) == 2
    assert "boxes" in capsys.readouterr().err
