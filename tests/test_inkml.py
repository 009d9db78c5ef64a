"""InkML parsing: every kind of bad file gets its own reason; real CROHME sources parse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from formula_gan.data.inkml import InkmlError, group_boxes, iter_inkml_files, parse_inkml, read_inkml, read_truth

NS = 'xmlns="http://www.w3.org/2003/InkML"'


def inkml(traces: list[str], truth: str | None = "$x+1$", fmt: str = "", groups: str = "") -> bytes:
    body = "".join(f'<trace id="{i}">{t}</trace>\n' for i, t in enumerate(traces))
    label = f'<annotation type="truth">{truth}</annotation>\n' if truth is not None else ""
    return f"<ink {NS}>\n{fmt}{label}{body}{groups}</ink>\n".encode()


GOOD = ["10 10, 20 20, 30 10", "40 40, 50 50"]


def test_good_file_two_channels() -> None:
    ink = parse_inkml(inkml(GOOD), source="a.inkml")
    assert ink.truth == "$x+1$" and ink.source == "a.inkml"
    assert [s.shape for s in ink.strokes] == [(3, 2), (2, 2)]
    assert ink.bbox() == (10.0, 10.0, 50.0, 50.0)


def test_extra_channels_follow_trace_format() -> None:
    # time first: X and Y are the 2nd and 3rd numbers
    fmt = '<traceFormat><channel name="T"/><channel name="X"/><channel name="Y"/></traceFormat>\n'
    ink = parse_inkml(inkml(["0 1 2, 5 3 4"], fmt=fmt))
    np.testing.assert_array_equal(ink.strokes[0], [[1, 2], [3, 4]])
    # undeclared third number (some MfrDB files): X Y are the first two
    ink = parse_inkml(inkml(["1 2 0.5, 3 4 0.7"]))
    np.testing.assert_array_equal(ink.strokes[0], [[1, 2], [3, 4]])


def test_trace_groups_and_boxes() -> None:
    groups = (
        '<traceGroup><annotation type="truth">Segmentation</annotation>'
        '<traceGroup><annotation type="truth">x</annotation><traceView traceDataRef="0"/></traceGroup>'
        '<traceGroup><annotation type="truth">=</annotation><traceView traceDataRef="1"/></traceGroup>'
        "</traceGroup>"
    )
    ink = parse_inkml(inkml(GOOD, groups=groups))
    assert ink.trace_groups == [("x", ["0"]), ("=", ["1"])]
    assert list(group_boxes(ink)) == [("x", 20.0, 10.0), ("=", 10.0, 10.0)]


BAD = {
    "malformed-xml": b"<ink><trace>1 2</ink>",
    "malformed-xml/empty": b"",
    "malformed-xml/entity": b'<!DOCTYPE ink [<!ENTITY a "aaaa">]><ink>&a;</ink>',
    "no-traces": inkml([]),
    "empty-trace": inkml(["1 2, 3 4", "   "]),
    "missing-truth": inkml(GOOD, truth=None),
    "missing-truth/empty": inkml(GOOD, truth=" $ $ "),
    "non-finite": inkml(["1 2, nan 4"]),
    "non-finite/inf": inkml(["1 2, 3 inf"]),
    "non-finite/span": inkml(["1e308 1, -1e308 3"]),  # finite points, an infinite width: NaN pixels in rasterize
    "zero-size": inkml(["5 5, 5 5", "5 5"]),
    "bad-number": inkml(["1 2, 3 x"]),
    "bad-number/one-channel": inkml(["1, 2, 3"]),
    "bad-number/difference": inkml(["1 2, '1 '1"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_its_reason(case: str) -> None:
    with pytest.raises(InkmlError) as info:
        parse_inkml(BAD[case])
    assert info.value.kind == case.split("/")[0]
    assert info.value.reason  # a readable sentence for rejects.jsonl


def test_ink_to_be_read_needs_no_label() -> None:
    """recognize reads a user's pen input, which has no label: it was refused for lacking one."""
    ink = parse_inkml(inkml(GOOD, truth=None), labelled=False)
    assert ink.truth == "" and len(ink.strokes) == 2
    assert parse_inkml(inkml(GOOD, truth=" $ $ "), labelled=False).truth == ""
    with pytest.raises(InkmlError, match="no <trace>"):  # everything else is checked as before
        parse_inkml(inkml([], truth=None), labelled=False)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8"])
def test_entities_are_refused_in_any_encoding(encoding: str) -> None:
    """A DOCTYPE in UTF-16 has no "<!DOCTYPE" bytes: the parser itself must refuse it, or an
    internal entity is expanded into the label (and billions of laughs into memory)."""
    declared = "UTF-16" if encoding.startswith("utf-16") else "UTF-8"
    laughs = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    for dtd, body in (('<!ENTITY a "EVIL">', "&a;"), ('<!ENTITY l0 "lol">' + laughs, "&l9;")):
        doc = (f'<?xml version="1.0" encoding="{declared}"?><!DOCTYPE ink [{dtd}]><ink {NS}>'
               f'<annotation type="truth">{body}</annotation><trace id="0">1 2, 3 4</trace></ink>')
        with pytest.raises(InkmlError) as info:
            parse_inkml(doc.encode(encoding))
        assert info.value.kind == "malformed-xml" and "DOCTYPE" in info.value.reason
    plain = f'<?xml version="1.0" encoding="{declared}"?><ink {NS}><annotation type="truth">$x$</annotation><trace>1 2, 3 4</trace></ink>'
    assert parse_inkml(plain.encode(encoding)).truth == "$x$"  # the encoding itself is fine


def test_size_limit_and_unreadable(tmp_path: Path) -> None:
    big = tmp_path / "big.inkml"
    big.write_bytes(inkml(GOOD) + b" " * 2000)
    with pytest.raises(InkmlError) as info:
        read_inkml(big, max_bytes=1000)
    assert info.value.kind == "too-large"
    with pytest.raises(InkmlError) as info:
        read_inkml(tmp_path / "missing.inkml")
    assert info.value.kind == "unreadable"


def test_iter_files_sorted_and_read_truth(tmp_path: Path) -> None:
    for rel in ("b/2.inkml", "a/9.inkml", "a/10.InkML", "a/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(inkml(GOOD, truth=rel))
    files = [p.relative_to(tmp_path).as_posix() for p in iter_inkml_files(tmp_path)]
    assert files == ["a/10.InkML", "a/9.inkml", "b/2.inkml"]
    assert read_truth(tmp_path / "b/2.inkml") == "b/2.inkml"


@pytest.mark.data
def test_real_crohme_sources_parse(crohme_dir: Path) -> None:
    """Three files of every training source and of test 2014: scales differ by 10^4, all parse."""
    heights = {}
    dirs = sorted(p for p in (crohme_dir / "train").iterdir() if p.is_dir()) + [crohme_dir / "test2014"]
    assert len(dirs) >= 6
    for d in dirs:
        for path in sorted(d.glob("*.inkml"))[:3]:
            ink = read_inkml(path)
            assert ink.truth and ink.strokes and ink.trace_groups
            assert all(s.shape[1] == 2 and np.isfinite(s).all() for s in ink.strokes)
            heights[d.name] = ink.bbox()[3] - ink.bbox()[1]
    assert max(heights.values()) / min(heights.values()) > 100  # very different coordinate scales
