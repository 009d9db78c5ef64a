"""Normalization through the real KaTeX parser in a real node process (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

import katex_render.node_normalizer as node_normalizer
import katex_render.normalize as normalize_module
from katex_render.errors import KatexRenderError
from katex_render.normalize import (
    Normalizer,
    canonicalize,
    filter_tokens,
    load_vocab,
    normalize_file,
    reason_category,
    tokens_to_latex,
)
from katex_render.readers import read_formulas

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "samples" / "formulas.txt"

if shutil.which(os.environ.get("FORMULA_GAN_NODE", "node")) is None:
    pytest.skip("node not found (install Node.js and run bash scripts/setup.sh)", allow_module_level=True)
if not normalize_module.KATEX_PACKAGE.is_file():
    pytest.skip("KaTeX not installed: run npm ci --prefix katex_render", allow_module_level=True)


@pytest.fixture(scope="module")
def norm():
    with Normalizer() as n:
        yield n


def tokens(norm: Normalizer, latex: str) -> list[str]:
    (result, error), = norm.normalize([latex])
    assert error is None, f"{latex!r} rejected: {error}"
    return result


@pytest.mark.parametrize(
    "a, b",
    [
        (r"\frac 1 2", r"\frac{1}{2}"),
        (r"\frac12", r"{1 \over 2}"),
        (r"x^2", r"x^{2}"),
        (r"x^2_i", r"x_{i}^{2}"),
        (r"x^{{2}}", r"x^2"),
        (r"\sqrt[3] x", r"\sqrt[3]{x}"),
        (r"\hat x", r"\hat{x}"),
        (r"a\,b\;c\:d\!e\quad f\qquad g~h\ i\hspace{1em}j\kern2pt k\mkern3mu l", "abcdefghijkl"),
        (r"a \lt b \gt c", "a<b>c"),
        (r"a \le b \ge c", r"a \leq b \geq c"),
        (r"a \le b", "a ≤ b"),
        (r"a \ne b", r"a \neq b"),
        (r"a \not= b", r"a \neq b"),
        (r"a \not\in B", r"a \notin B"),
        (r"a_1,\dots,a_n", r"a_1,\ldots,a_n"),
        (r"a_1+\dots+a_n", r"a_1+\cdots+a_n"),
        (r"f: A \to B", r"f: A \rightarrow B"),
        (r"\lbrace x \rbrace", r"\{ x \}"),
        (r"\left\lbrace x \right.", r"\left\{ x \right."),
        (r"{\rm d}x", r"\mathrm{d}x"),
        (r"\bf x", r"\mathbf{x}"),
        (r"\mbox{if }x", r"\text{if}x"),
        (r"\left(\begin{matrix}a&b\\c&d\end{matrix}\right)", r"\begin{pmatrix}a&b\\c&d\end{pmatrix}"),
        (r"a \choose b", r"\binom a b"),
        (r"\dfrac12", r"\dfrac{1}{2}"),
        (r"f'", r"f^{\prime}"),
        (r"\color{red}{x}+\textcolor{blue}{y}", "x+y"),
        (r"\tiny x \Huge y", "xy"),
        (r"α+β", r"\alpha+\beta"),
        (r"\boldsymbol a", r"\boldsymbol{a}"),
        (r"\sum\limits_{i}", r"\sum \limits _ i"),
        (r"\def\f#1{\frac{#1}{2}}\f x", r"\frac{x}{2}"),
        (r"\text{é}", r"\text{\'e}"),
        (r"\fbox{$\displaystyle x$}", r"\boxed{x}"),
    ],
)
def test_equivalent_inputs_give_the_same_tokens(norm: Normalizer, a: str, b: str) -> None:
    assert tokens(norm, a) == tokens(norm, b)


@pytest.mark.parametrize(
    "latex, expected",
    [
        (r"x^2", "x ^ { 2 }"),
        (r"x^2_3", "x _ { 3 } ^ { 2 }"),
        (r"\frac12", r"\frac { 1 } { 2 }"),
        (r"\sqrt[n]{a}", r"\sqrt [ n ] { a }"),
        (r"{}^{14}C", "{ } ^ { 1 4 } C"),
        (r"\text{if x}", r"\text { i f x }"),
        (r"\begin{pmatrix}a&b\\c&d\end{pmatrix}", r"\begin{pmatrix} a & b \\ c & d \end{pmatrix}"),
        (r"\begin{array}{|c|l}a&b\end{array}", r"\begin{array} { | c | l } a & b \end{array}"),
        (r"\begin{cases}1&x>0\\0&x\le0\end{cases}", r"\begin{cases} 1 & x > 0 \\ 0 & x \leq 0 \end{cases}"),
        (r"\begin{aligned}a&=b\\&=c\end{aligned}", r"\begin{aligned} a & = b \\ & = c \end{aligned}"),
        (r"\lim_{x\to0}", r"\lim _ { x \rightarrow 0 }"),
        (r"\operatorname*{arg\,max}_x", r"\operatorname* { a r g m a x } _ { x }"),
        (r"\overset{a}{=}\underset{b}{c}\stackrel{d}{\to}", r"\overset { a } { = } \underset { b } { c } \stackrel { d } { \rightarrow }"),
        (r"\left( x \middle| y \right)", r"\left ( x \middle | y \right )"),
        (r"\bigl( x \bigr)", r"\bigl ( x \bigr )"),
        (r"\displaystyle\sum_i x_i", r"{ \displaystyle \sum _ { i } x _ { i } }"),
        (r"x_{\vdots}", r"x _ { \vdots }"),
        (r"\boxed{x}", r"\boxed { x }"),
        (r"\xrightarrow[a]{b}", r"\xrightarrow [ a ] { b }"),
        (r"\cfrac{1}{2}", r"\cfrac { 1 } { 2 }"),
        (r"\text{\'{e}\"u}", r"\text { é ü }"),
        (r"\fbox{ab}", r"\fbox { a b }"),
        (r"\text{if $x$}", r"\text { i f $ x $ }"),
        (r"\pmb{x}", r"\pmb { x }"),
        (r"\sqrt{\smash[b]{y}}", r"\sqrt { y }"),
        (r"\mathop{x}\limits_a", r"\mathop { x } \limits _ { a }"),
        (r"a \atop b", r"{ a \atop b }"),
        (r"\frac{n\brace k}{2}", r"\frac { { n \brace k } } { 2 }"),
    ],
)
def test_token_conventions(norm: Normalizer, latex: str, expected: str) -> None:
    assert " ".join(tokens(norm, latex)) == expected


@pytest.mark.parametrize(
    "latex, reason",
    [
        (r"\foo", r"KaTeX parse error: Undefined control sequence: \foo at position 1"),
        (r"x^", "KaTeX parse error: Expected group after '^' at position 2"),
        (r"\frac{1}{", "KaTeX parse error: Unexpected end of input"),
        (r"\def\a{\a}\a", "KaTeX parse error: Too many expansions"),
        (r"\def\a{\b\b}\def\b{\c\c}\def\c{\d\d}\def\d{\e\e}\def\e{xx}" + r"\a" * 50, "KaTeX parse error: Too many expansions"),
        ("x" * 4001, "too long: 4001 characters (limit 4000)"),
        pytest.param(r"\def\b{" + "x" * 1000 + r"}\def\a{\b\b\b\b\b}" + r"\a" * 10,
                     "too many tokens after macro expansion: 50000 (limit 20000)", id="expansion-bomb"),
        (r"\href{javascript:alert(1)}{x}", r"untrusted or unsupported command: \href"),
        (r"\includegraphics{x.png}", r"untrusted or unsupported command: \includegraphics"),
        (r"\, \quad", "empty formula: nothing to write"),
        (r"\rule{1cm}{1cm}", r"unsupported construct: \rule"),
        (r"\tag{1} x", r"KaTeX parse error: \tag works only in display equations"),
        ("≙", r"unsupported construct: \html@mathml"),
    ],
)
def test_rejects_with_reason_and_neighbours_unharmed(norm: Normalizer, latex: str, reason: str) -> None:
    results = norm.normalize(["a+b", latex, "c"])
    assert results[0] == (["a", "+", "b"], None)
    assert results[2] == (["c"], None)
    assert results[1][0] is None
    assert results[1][1].startswith(reason), results[1][1]


def test_one_formula_never_changes_the_next(norm: Normalizer) -> None:
    # \gdef writes into KaTeX's macro table; \message prints on the protocol's stdout.
    results = norm.normalize([r"\gdef\foo{x}\foo", r"\foo", r'\message{{"id": 2, "tokens": ["forged"]}}y', "z"])
    assert results[0] == (["x"], None)
    assert results[1][1].startswith(r"KaTeX parse error: Undefined control sequence: \foo")
    assert results[2] == (["y"], None)
    assert results[3] == (["z"], None)


def test_round_trip_over_the_sample(norm: Normalizer) -> None:
    latex = [f.latex for f in read_formulas(SAMPLE)]
    assert len(latex) >= 300
    first = norm.normalize(latex)
    rejected = [(x, err) for x, (_, err) in zip(latex, first) if err]
    assert not rejected, rejected[:5]
    joined = [" ".join(t) for t, _ in first]
    again = norm.normalize(joined)
    assert [" ".join(t or []) for t, _ in again] == joined
    unspaced = norm.normalize([tokens_to_latex(t) for t, _ in first])
    assert [" ".join(t or []) for t, _ in unspaced] == joined


@pytest.mark.parametrize(
    "latex, rendered",
    [
        (r"\text{A.} x^2", r"\text {A.} x ^ { 2 }"),
        (r"\text{if $x>0$ \S a}", r"\text {if$ x > 0 $\S a}"),
        (r"\textbf{a {\it b}}", r"\textbf {a{\textit {b}}}"),
        (r"\frac{\text{km}}{h}", r"\frac { \text {km} } { h }"),
    ],
)
def test_tokens_to_latex_writes_text_unspaced(norm: Normalizer, latex: str, rendered: str) -> None:
    toks = tokens(norm, latex)
    assert tokens_to_latex(toks) == rendered
    assert tokens(norm, rendered) == toks, "normalizing what is rendered gives the same tokens"


def test_round_trip_over_shared_corpus(norm: Normalizer, shared_data: Path) -> None:
    path = shared_data / "formulas" / "im2latex_formulas.norm.lst"
    items = []
    for item in read_formulas(path):
        items.append(item.latex)
        if len(items) == 3000:
            break
    first = norm.normalize(items)
    accepted = [" ".join(t) for t, _ in first if t is not None]
    assert len(accepted) >= 0.98 * len(items), [e for _, e in first if e][:10]
    again = norm.normalize(accepted)
    assert [" ".join(t or []) for t, _ in again] == accepted
    unspaced = norm.normalize([tokens_to_latex(t) for t, _ in first if t is not None])
    assert [" ".join(t or []) for t, _ in unspaced] == accepted


def test_hanging_formula_times_out_and_the_rest_goes_on() -> None:
    # With no expansion limit, \def\a{\a}\a loops forever inside KaTeX.
    with Normalizer(max_expand=10**9, timeout_s=1.5) as n:
        results = n.normalize([r"\frac12", r"\def\a{\a}\a", "x^2", r"\foo", "y"])
        assert n.restarts == 1
        assert n.katex_version == json.loads(normalize_module.KATEX_PACKAGE.read_text())["version"]
        assert results[0] == ([r"\frac", "{", "1", "}", "{", "2", "}"], None)
        assert results[1] == (None, "timeout")
        assert results[2] == (["x", "^", "{", "2", "}"], None)
        assert results[3][1].startswith("KaTeX parse error: Undefined control sequence")
        assert results[4] == (["y"], None)


def test_killed_node_process_mid_run_recovers(norm: Normalizer) -> None:
    latex = [f.latex for f in read_formulas(SAMPLE)] * 12
    expected = norm.normalize(latex)
    with Normalizer(batch_size=len(latex)) as n:
        n.normalize(["x"])
        victim = n.pid

        def kill() -> None:
            time.sleep(0.15)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill)
        killer.start()
        results = n.normalize(latex)
        killer.join()
        results += n.normalize(["z"])  # a kill after the batch is noticed by the next call
        assert n.restarts >= 1
        assert n.pid != victim
    assert results[:-1] == expected, "every formula normalized exactly once, in order"
    assert results[-1] == (["z"], None)


def test_missing_node_and_katex_are_clear_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(KatexRenderError, match="cannot run Node.js"):
        Normalizer(node=str(tmp_path / "no-node")).start()
    monkeypatch.setattr(node_normalizer, "KATEX_PACKAGE", tmp_path / "node_modules" / "katex" / "package.json")
    with pytest.raises(KatexRenderError, match="npm ci --prefix katex_render"):
        Normalizer().start()


def test_filter_tokens() -> None:
    toks = ["x", "^", "{", "2", "}"]
    assert filter_tokens(toks, None, None) is None
    assert filter_tokens(toks, None, 5) is None
    assert filter_tokens(toks, None, 4) == "too many tokens: 5 > 4"
    assert filter_tokens(toks, {"x", "^", "{", "}", "2"}, 50) is None
    assert filter_tokens(toks, {"x", "{", "}"}, None) == "tokens not in the vocabulary: 2 ^"


def test_load_vocab(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text(json.dumps({"format": 1, "tokens": ["a", "b"]}))
    (tmp_path / "l.json").write_text(json.dumps(["a"]))
    (tmp_path / "v.txt").write_text("a\n\\frac\n\n")
    (tmp_path / "bad.json").write_text("{")
    assert load_vocab(tmp_path / "v.json") == {"a", "b"}
    assert load_vocab(tmp_path / "l.json") == {"a"}
    assert load_vocab(tmp_path / "v.txt") == {"a", "\\frac"}
    with pytest.raises(KatexRenderError, match="not valid JSON"):
        load_vocab(tmp_path / "bad.json")


def test_reason_category() -> None:
    assert reason_category(r"KaTeX parse error: Undefined control sequence: \foo at position 3") == (
        r"KaTeX parse error: Undefined control sequence: \foo"
    )
    assert reason_category("too many tokens: 60 > 50") == "too many tokens"


def test_normalize_file_api(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([json.dumps({"latex": r"\frac 1 2"}), "{bad", json.dumps({"latex": r"\foo"}),
                              json.dumps({"latex": "a+b+c+d+e"})]) + "\n")
    summary = normalize_file(src, tmp_path / "out.jsonl", tmp_path / "rej.jsonl", output_format="jsonl",
                             max_tokens=7)
    assert (summary.accepted, summary.rejected) == (1, 3)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out == [{"source": "in.jsonl:1", "latex": r"\frac 1 2", "tokens": r"\frac { 1 } { 2 }"}]
    rejects = [json.loads(line) for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4]
    assert rejects[2]["reason"] == "too many tokens: 9 > 7"
    assert summary.reasons["too many tokens"] == 1
    assert "1 accepted, 3 rejected of 4" in summary.line()


@pytest.mark.parametrize(
    "a, b",
    [
        (r"{x^{n}}{e^{-x}}", r"x^{n}e^{-x}"),  # the example: braces that group nothing
        (r"n { \times } n", r"n \times n"),
        (r"{ r ( t ) = ( x ( t ) , y ( t ) ) }", r"r(t)=(x(t),y(t))"),
        (r"\sin { 4 2 }", r"\sin 42"),
        (r"a{=}b", "a=b"),  # braces only change the spacing in print, which no label holds
        (r"\frac{{a}{b}}{c}", r"\frac{ab}{c}"),
        (r"{{a}}", "a"),
        (r"{x}^2", "x^2"),
    ],
)
def test_groups_that_group_nothing_are_dropped(norm: Normalizer, a: str, b: str) -> None:
    assert tokens(norm, a) == tokens(norm, b)


@pytest.mark.parametrize(
    "latex, expected",
    [
        # a script's base keeps its group unless it is one ordinary atom
        (r"{a+b}^{2}", "{ a + b } ^ { 2 }"),
        (r"{x^{n}}^{2}", "{ x ^ { n } } ^ { 2 }"),
        (r"{}^{14}C", "{ } ^ { 1 4 } C"),
        (r"{\sum}_{i} x", r"{ \sum } _ { i } x"),
        # arguments stay braced
        (r"\frac{a+b}{c}", r"\frac { a + b } { c }"),
        (r"\sqrt{x y}", r"\sqrt { x y }"),
        (r"\text{a b}", r"\text { a b }"),
        # infix commands and style switches: the group they act on is kept
        (r"{a \over b} c", r"\frac { a } { b } c"),
        (r"{a \atop b} c", r"{ a \atop b } c"),
        (r"{\rm d} x", r"\mathrm { d } x"),
        (r"{a \scriptstyle b} c", r"a { \scriptstyle b } c"),
        (r"{\displaystyle x}^2", r"{ \displaystyle x } ^ { 2 }"),
    ],
)
def test_groups_that_carry_meaning_are_kept(norm: Normalizer, latex: str, expected: str) -> None:
    assert " ".join(tokens(norm, latex)) == expected


def test_canonicalize_readings_and_old_labels(norm: Normalizer) -> None:
    old_label = "{ x ^ { n } } { e ^ { - x } }".split()
    unparsable = ["{", "a"]
    out = canonicalize([old_label, unparsable, [], ["x"], old_label], norm)
    assert out == [["x", "^", "{", "n", "}", "e", "^", "{", "-", "x", "}"], unparsable, [], ["x"], out[0]]
    assert canonicalize([["{", "x", "}"]]) == [["x"]]  # starts and closes its own normalizer
