"""How tokens no writer wrote are drawn: compositions of a writer's glyphs, then the font."""

from __future__ import annotations

from formula_gan.stitching.compose import plan
from formula_gan.stitching.hershey import HersheyGlyphs

BANK = set("abcdefghijklmnopqrstuvwxyz0123456789()[]|.-=<>+/") | {"\\rightarrow", "\\int", "\\{", "\\}", "\\sqrt",
                                                                  "\\ldots", "\\in", "\\Delta"}
BOX = (0.0, 0.0, 60.0, 30.0)


def parts(tokens: list[str], index: int = 0, box=BOX):
    return plan(tokens, index, box, BANK.__contains__)


def test_a_glyph_the_bank_has_is_drawn_as_it_is():
    assert [(p.symbol, p.box, p.fit) for p in parts(["x"])] == [("x", BOX, "glyph")]
    assert [(p.symbol, p.fit) for p in parts(["\\frac"])] == [("-", "bar")]
    assert [(p.symbol, p.fit) for p in parts(["\\sqrt"])] == [("\\sqrt", "radical")]


def test_operator_names_are_their_letters_side_by_side():
    ln = parts(["\\ln"])
    assert [p.symbol for p in ln] == ["l", "n"]
    assert ln[0].box[0] == 0 and ln[1].box[2] == 60 and ln[0].box[2] == ln[1].box[0] == 30
    assert ln[0].box[1] == 0 and ln[1].box[1] > 10, "an x-height letter sits low, an ascender reaches the top"
    assert [p.symbol for p in parts(["\\arcsin"])] == list("arcsin")
    assert parts(["\\clubsuit"]) is None, "only real operator names are spelled out"


def test_lookalikes_rows_overlays_and_delimiters():
    assert [p.symbol for p in parts(["\\cdot"])] == ["."]
    assert [(p.symbol, p.fit) for p in parts(["\\vec"])] == [("\\rightarrow", "bar")]
    bars = parts(["\\|"])
    assert [p.symbol for p in bars] == ["|", "|"] and bars[0].box[2] <= bars[1].box[0]
    dots = parts([":"])
    assert [p.symbol for p in dots] == [".", "."] and dots[0].box[3] <= dots[1].box[1]
    assert [p.symbol for p in parts(["\\notin"])] == ["\\in", "/"]
    matrix = parts(["\\begin{pmatrix}"], box=(0.0, 0.0, 126.0, 96.0))
    assert [(p.symbol, p.fit) for p in matrix] == [("(", "tall"), (")", "tall")]
    assert matrix[0].box[0] == 0 and matrix[1].box[2] == 126 and matrix[0].box[3] == 96
    assert [p.symbol for p in parts(["\\begin{cases}"])] == ["\\{"]
    assert [p.symbol for p in parts(["\\stackrel", "{", "d", "}", "{", "=", "}"])] == ["="]


def test_what_cannot_be_composed_is_none_and_the_font_has_the_rest():
    for token in ("\\partial", "\\nabla", "\\omega", "Z", "\\subset"):
        assert parts([token]) is None
        assert plan([token], 0, BOX, lambda t: t in BANK or HersheyGlyphs().has(t)) is not None
    font = HersheyGlyphs()
    strokes = font.strokes("\\partial")
    assert strokes and all(s.shape[1] == 2 for s in strokes)
    w, h = font.size("\\partial")
    assert 0 < w < 40 and 10 < h < 40
    assert min(float(s[:, 0].min()) for s in strokes) == 0.0
