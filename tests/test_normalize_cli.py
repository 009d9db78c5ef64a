"""``formula-gan normalize`` end to end through the real CLI entry point, node and KaTeX."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import katex_render.normalize as normalize_module
from formula_gan.cli import main

REPO = Path(__file__).resolve().parents[1]

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


# ---- hostile use: outputs that are inputs, bad settings, bad lines, interruptions ------------
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "formula_gan", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_an_output_that_is_an_input_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    """`normalize c.txt --out c.txt` used to empty c.txt and exit 0."""
    corpus = tmp_path / "c.txt"
    shutil.copy(REPO / "datasets" / "samples" / "formulas.txt", corpus)
    before = corpus.read_bytes()
    flist = tmp_path / "f.lst"
    flist.write_text("a.png 0\n")
    lst = tmp_path / "c.lst"
    shutil.copy(corpus, lst)
    cases = [
        (["c.txt", "--out", "c.txt"], "--out c.txt is also the input"),
        (["c.txt", "--out", "o.txt", "--rejects", "./c.txt"], "--rejects c.txt is also the input"),
        (["c.txt", "--out", "o.txt", "--rejects", "o.txt"], "--out and --rejects are the same file"),
        (["c.lst", "--filter-list", "f.lst", "--out", "f.lst"], "--out f.lst is also --filter-list"),
        (["c.txt", "--vocab", "c.lst", "--out", "c.lst"], "--out c.lst is also --vocab"),
    ]
    os.link(corpus, tmp_path / "hard.txt")  # another name of the same file
    cases.append((["hard.txt", "--out", "c.txt"], "--out c.txt is also the input"))
    for args, message in cases:
        result = _cli("normalize", *args, "--no-progress", cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()  # one line, no traceback
        assert line.startswith(f"formula-gan normalize: error: {message}"), line
    assert corpus.read_bytes() == before and lst.read_bytes() == before and flist.read_text() == "a.png 0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.lst", "c.txt", "f.lst", "hard.txt"]  # nothing written


def test_settings_that_would_reject_everything_are_errors(tmp_path: Path) -> None:
    """--timeout -1 and --max-chars -5 rejected every formula with exit 0."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("x^2\n")
    for option, value, message in (("--timeout", "-1", "must be at least 0.001, got -1"),
                                   ("--timeout", "nan", "must be a finite number"),
                                   ("--max-chars", "-5", "must be at least 1, got -5"),
                                   ("--max-tokens", "0", "must be at least 1, got 0")):
        result = _cli("normalize", "c.txt", "--out", "o.txt", option, value, cwd=tmp_path)
        assert result.returncode == 2 and f"argument {option}: {message}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


def test_a_line_nested_too_deep_is_a_reject_and_the_run_goes_on(tmp_path: Path) -> None:
    """A .jsonl line of 100,000 brackets was a RecursionError traceback that left empty outputs."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b'{"latex": "x^2"}\n' + b"[" * 100_000 + b"\n" + b'{"latex": "\\\\frac 1 2"}\n')
    result = _cli("normalize", "c.jsonl", "--out", "o.jsonl", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["tokens"] for line in (tmp_path / "o.jsonl").read_text().splitlines()] == [
        "x ^ { 2 }", r"\frac { 1 } { 2 }"]
    [reject] = [json.loads(line) for line in (tmp_path / "o.jsonl.rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and reject["reason"] == "bad JSON: nested too deep"


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_keeps_the_previous_outputs_and_leaves_no_temporary(tmp_path: Path, signame: str) -> None:
    """Outputs are written under a temporary name and renamed at the end: Ctrl-C or SIGTERM
    mid-run leaves the previous result as it was, one line on stderr, nothing else behind."""
    corpus = tmp_path / "c.txt"
    lines = (REPO / "datasets" / "samples" / "formulas.txt").read_text().splitlines()
    corpus.write_text("\n".join(lines * 300) + "\n")  # ~100,000 formulas: seconds of work
    (tmp_path / "o.txt").write_text("previous result\n")
    (tmp_path / "o.txt.rejects.jsonl").write_text("previous rejects\n")
    proc = subprocess.Popen([sys.executable, "-m", "formula_gan", "normalize", "c.txt", "--out", "o.txt", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".o.txt.tmp-*")):  # the run is writing
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    verb = "interrupted" if signame == "SIGINT" else "terminated"
    assert err.strip().splitlines() == [f"formula-gan normalize: {verb}; rerun the same command to resume"]
    assert proc.returncode == 128 + getattr(signal, signame)
    assert (tmp_path / "o.txt").read_text() == "previous result\n"
    assert (tmp_path / "o.txt.rejects.jsonl").read_text() == "previous rejects\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "o.txt", "o.txt.rejects.jsonl"]
