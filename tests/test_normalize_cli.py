"""``formula-gan normalize`` end to end through the real CLI entry point, node and KaTeX."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import katex_render.normalize as normalize_module
from formula_gan.cli import main

if shutil.which(os.environ.get("FORMULA_GAN_NODE", "node")) is None:
    pytest.skip("node not found (install Node.js and run bash scripts/setup.sh)", allow_module_level=True)
if not normalize_module.KATEX_PACKAGE.is_file():
    pytest.skip("KaTeX not installed: run npm ci --prefix katex_render", allow_module_level=True)


def test_normalize_txt_to_txt_with_rejects(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"\xef\xbb\xbf\\frac 1 2\r\n\r\nx^2\r\n\\foo\r\nbad \xff byte\r\n\\def\\a{\\a}\\a\r\n")
    out, rej = tmp_path / "out" / "norm.txt", tmp_path / "rej.jsonl"
    rc = main(["normalize", str(src), "--out", str(out), "--rejects", str(rej), "--no-progress"])
    assert rc == 0
    assert out.read_text().splitlines() == [r"\frac { 1 } { 2 }", "x ^ { 2 }"]
    rejects = [json.loads(line) for line in rej.read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejects] == [(2, "in.txt:2"), (4, "in.txt:4"), (5, "in.txt:5"),
                                                           (6, "in.txt:6")]
    assert rejects[0]["reason"] == "blank line"
    assert rejects[1]["reason"] == r"KaTeX parse error: Undefined control sequence: \foo at position 1"
    assert rejects[1]["input"] == r"\foo"
    assert rejects[2]["reason"].startswith("not valid UTF-8")
    assert "Too many expansions" in rejects[3]["reason"]
    printed = capsys.readouterr().out
    assert "2 accepted, 4 rejected of 6" in printed
    assert "top reasons" in printed


def test_normalize_lst_with_filter_to_jsonl_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    formulas = tmp_path / "formulas.lst"
    formulas.write_text("a+b\n\\frac{a}{b}\nx_1+x_2+x_3+x_4\n\\gamma\n")
    flist = tmp_path / "train.lst"
    flist.write_text("i0.png 0\ni2.png 2\ni3.png 3\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["a", "+", "b", "x", "_", "{", "}", "1", "2", "3", "4"]) + "\n")
    out = tmp_path / "train.jsonl"
    rc = main(["normalize", str(formulas), "--filter-list", str(flist), "--out", str(out), "--vocab", str(vocab),
               "--max-tokens", "30", "--no-progress"])
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records == [
        {"source": "formulas.lst:1", "latex": "a+b", "tokens": "a + b"},
        {"source": "formulas.lst:3", "latex": "x_1+x_2+x_3+x_4", "tokens": "x _ { 1 } + x _ { 2 } + x _ { 3 } + x _ { 4 }"},
    ]
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(4, r"tokens not in the vocabulary: \gamma")]
    rc = main(["normalize", str(formulas), "--filter-list", str(flist), "--out", str(out), "--max-tokens", "5",
               "--no-progress"])
    assert rc == 0
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejects] == ["too many tokens: 23 > 5"]


def test_missing_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["normalize", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o.txt"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"formula-gan normalize: error: input file not found: {tmp_path / 'nope.txt'}"


def test_help_documents_formats(capsys: pytest.CaptureFixture) -> None:
    assert main(["normalize", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--filter-list", "--vocab", "--max-tokens", "rejects", "jsonl", r"\frac { 1 } { 2 }"):
        assert word in text
