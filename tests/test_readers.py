"""Formula readers: every line becomes a formula or a reject with a reason; nothing is lost."""

from __future__ import annotations

import inspect
import json
import tracemalloc
from pathlib import Path

import pytest

from katex_render.errors import KatexRenderError
from katex_render.readers import Reject, SourceFormula, detect_format, read_formulas


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_txt_lines_bad_and_good(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbfx^2\r\n"  # BOM at the start, CRLF
        b"   \r\n"  # blank
        b"\\frac{1}{2}  \n"  # trailing spaces, LF
        b"a\xffb\n"  # not UTF-8
        b"a\rb\n"  # a stray CR inside the line
        b"caf\xc3\xa9 \\alpha\n"  # UTF-8 text
        b"\x00x\n"  # NUL
        b"y\xef\xbb\xbf\n"  # a BOM in the middle of the file
        b"z"  # no final newline
    )
    items = list(read_formulas(write(tmp_path / "f.txt", data)))
    assert len(items) == 9, "one item per line, none lost"
    assert [i.source for i in items] == [f"f.txt:{n}" for n in range(1, 10)]
    good = {i.source: i.latex for i in items if isinstance(i, SourceFormula)}
    assert good == {"f.txt:1": "x^2", "f.txt:3": "\\frac{1}{2}", "f.txt:6": "café \\alpha", "f.txt:9": "z"}
    reasons = {i.source: i.reason for i in items if isinstance(i, Reject)}
    assert reasons["f.txt:2"] == "blank line"
    assert reasons["f.txt:4"] == "not valid UTF-8: byte 0xff at column 2"
    assert reasons["f.txt:5"] == "control character U+000D at column 2"
    assert reasons["f.txt:7"] == "control character U+0000 at column 1"
    assert reasons["f.txt:8"].startswith("byte order mark (U+FEFF) inside the line")
    bad_utf8 = next(i for i in items if i.source == "f.txt:4")
    assert bad_utf8.input == "a\\xffb", "undecodable bytes are shown, not dropped"
    record = bad_utf8.to_record()
    assert record == {"source": "f.txt:4", "line": 4, "input": "a\\xffb", "reason": bad_utf8.reason}
    json.dumps(record)  # the report entry is plain JSON


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        json.dumps({"latex": "x+1", "id": 7}),
        "{not json",
        json.dumps({"tex": "x"}),
        json.dumps({"latex": 3}),
        json.dumps(["x"]),
        "",
        json.dumps({"latex": "  "}),
        json.dumps({"latex": "a\u0007b"}),
        json.dumps({"latex": "\\sqrt{2}"}, ensure_ascii=False),
    ]
    path = write(tmp_path / "f.jsonl", ("\r\n".join(lines) + "\r\n").encode())
    items = list(read_formulas(path))
    assert len(items) == len(lines)
    assert [i.latex for i in items if isinstance(i, SourceFormula)] == ["x+1", "\\sqrt{2}"]
    reasons = [i.reason for i in items if isinstance(i, Reject)]
    assert reasons[0].startswith("bad JSON: Expecting property name")
    assert reasons[1] == reasons[2] == reasons[3] == 'bad JSON line: expected an object with a "latex" string'
    assert reasons[4:] == ["blank line", "blank line", "control character U+0007 at column 2"]


def test_lst_with_filter_list(tmp_path: Path) -> None:
    formulas = write(tmp_path / "formulas.lst", b"a\r\nb\r\n\r\nd\xfe\r\ne\rf\r\n")
    flist = write(tmp_path / "train_filter.lst", b"x.png 4\r\ny.png 0\r\nbroken\r\nz.png 2\r\nw.png 3\r\nq.png 9\r\n\r\n")
    items = list(read_formulas(formulas, filter_list=flist))
    good = [(i.source, i.latex) for i in items if isinstance(i, SourceFormula)]
    # a CR inside an im2latex line is a source line break: a space
    assert good == [("formulas.lst:1", "a"), ("formulas.lst:5", "e f")], "file order, selected lines only"
    reasons = {i.source: i.reason for i in items if isinstance(i, Reject)}
    assert reasons["train_filter.lst:3"] == "bad filter line: expected 'image_name line_index'"
    assert reasons["formulas.lst:3"] == "blank line"
    assert reasons["formulas.lst:4"].startswith("not valid UTF-8")
    assert reasons["formulas.lst:10"] == "selected by train_filter.lst (index 9) but formulas.lst has only 5 lines"
    assert len(items) == 6, "5 selections + 1 bad filter line, each accounted for"


def test_huge_filter_indices_are_rejects_that_cost_nothing(tmp_path: Path) -> None:
    """Numbers read from a filter list are bounded by the corpus: an index of 10^8 used to
    grow the line bitmap to 12 MB and loop over 10^8 indices (20 s), 10^18 to ask for 10^17 bytes."""
    formulas = write(tmp_path / "formulas.lst", b"a\nb\nc\n")
    flist = write(tmp_path / "f.lst", b"b.png 100000000\nz.png 1000000000000000000\na.png 1\nq.png 100000000\n")
    items = list(read_formulas(formulas, filter_list=flist))
    assert [(i.source, i.latex) for i in items if isinstance(i, SourceFormula)] == [("formulas.lst:2", "b")]
    reasons = {i.source: i.reason for i in items if isinstance(i, Reject)}
    assert reasons == {
        "formulas.lst:100000001": "selected by f.lst (index 100000000) but formulas.lst has only 3 lines",
        "formulas.lst:1000000000000000001": "selected by f.lst (index 1000000000000000000) but formulas.lst has only 3 lines",
    }
    assert len(items) == 3, "a repeated index is one selection, as for indices inside the file"


def test_a_json_line_nested_too_deep_is_that_lines_reject(tmp_path: Path) -> None:
    """100,000 nested brackets overflow the JSON decoder's recursion: a reject, not a RecursionError."""
    path = write(tmp_path / "f.jsonl", b'{"latex": "x"}\n' + b"[" * 100_000 + b"\n" + b'{"latex": "y"}\n')
    items = list(read_formulas(path))
    assert [i.latex for i in items if isinstance(i, SourceFormula)] == ["x", "y"]
    [reject] = [i for i in items if isinstance(i, Reject)]
    assert reject.source == "f.jsonl:2" and reject.reason == "bad JSON: nested too deep"


def test_lst_without_filter_reads_every_line(tmp_path: Path) -> None:
    formulas = write(tmp_path / "f.lst", b"x\ry\n\n")
    items = list(read_formulas(formulas))
    assert [(i.source, getattr(i, "latex", None) or i.reason) for i in items] == [
        ("f.lst:1", "x y"), ("f.lst:2", "blank line")]


def test_format_errors_are_clear(tmp_path: Path) -> None:
    txt = write(tmp_path / "f.txt", b"x\n")
    with pytest.raises(KatexRenderError, match="unknown input format 'tex'"):
        list(read_formulas(txt, "tex"))
    with pytest.raises(KatexRenderError, match="input file not found"):
        list(read_formulas(tmp_path / "missing.txt"))
    with pytest.raises(KatexRenderError, match="filter list selects lines of an im2latex .lst file"):
        list(read_formulas(txt, filter_list=txt))
    with pytest.raises(KatexRenderError, match="filter list not found"):
        list(read_formulas(txt, "lst", filter_list=tmp_path / "nope.lst"))


@pytest.mark.parametrize(
    "name, fmt",
    [("a.txt", "txt"), ("a.lst", "lst"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.JSON", "jsonl"), ("a", "txt")],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_streaming_memory_stays_flat(tmp_path: Path) -> None:
    # 15,000 lines (~600 kB) must stream: memory held while reading stays far below the file size.
    path = tmp_path / "big.txt"
    with path.open("w") as f:
        for i in range(15_000):
            f.write(f"x_{{{i}}}+\\frac{{{i}}}{{{i + 1}}}=y^{{2}}+z\n")
    items = read_formulas(path)
    assert inspect.isgenerator(items)
    tracemalloc.start()
    count = sum(1 for _ in items)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 15_000
    assert peak < 100_000, f"peak {peak} bytes while reading a {path.stat().st_size}-byte file"


def test_shared_im2latex_corpus_with_filter(shared_data: Path) -> None:
    formulas = shared_data / "formulas" / "im2latex_formulas.norm.lst"
    flist = shared_data / "formulas" / "im2latex_validate_filter.lst"
    if not flist.is_file():
        pytest.skip(f"{flist} not found")
    selected = sum(1 for line in flist.open("rb") if line.strip())
    items = list(read_formulas(formulas, filter_list=flist))
    assert len(items) == selected == 11_004
    assert all(isinstance(i, SourceFormula) for i in items), [i for i in items if isinstance(i, Reject)][:3]
    assert items[0].source == "im2latex_formulas.norm.lst:76948", "0-based index 76947 is line 76948"
