"""MathWriting's InkML dialect through every InkML command: prepare-crohme (handwritten shards),
prepare-formulas (their labels rendered), prepare-symbols (glyphs from its symbols.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formula_gan.cli import main
from formula_gan.data.jobs import load_manifest, shard_paths
from formula_gan.data.prepare_symbols import prepare_symbols
from formula_gan.data.shards import read_shard
from formula_gan.data.symbol_bank import SymbolBank
from test_render import require_browser

NS = 'xmlns="http://www.w3.org/2003/InkML"'
# x + 1: an x of two strokes, a plus of two strokes, a one of one stroke (x y t, as MathWriting writes)
STROKES = ["10 10 0, 30 40 1", "30 10 2, 10 40 3", "50 25 4, 70 25 5", "60 15 6, 60 35 7", "90 10 8, 90 40 9"]


def mathwriting(label: str, normalized: str | None = None) -> str:
    norm = f'<annotation type="normalizedLabel">{normalized}</annotation>' if normalized is not None else ""
    traces = "".join(f"<trace>{t}</trace>" for t in STROKES)
    return (f'<ink {NS}><annotation type="label">{label}</annotation>{norm}'
            f'<annotation type="splitTagOriginal">train</annotation>{traces}</ink>')


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    root.mkdir()
    (root / "00000000000000aa.inkml").write_text(mathwriting(r"x  +  1", "x+1"))
    (root / "00000000000000bb.inkml").write_text(mathwriting(r"\frac{x}{1}"))  # symbols/: label only
    glyphs = [{"sourceSampleId": "00000000000000aa", "strokeIndices": [0, 1], "label": "x"},
              {"sourceSampleId": "00000000000000aa", "strokeIndices": [2, 3], "label": "+"},
              {"sourceSampleId": "00000000000000aa", "strokeIndices": [4], "label": "1"},
              {"sourceSampleId": "00000000000000aa", "strokeIndices": [9], "label": "2"},  # no such stroke
              {"sourceSampleId": "ffffffffffffffff", "strokeIndices": [0], "label": "y"}]  # another split's file
    (tmp_path / "symbols.jsonl").write_text("".join(json.dumps(g) + "\n" for g in glyphs) + "not json\n")
    return root


def test_prepare_crohme_reads_mathwriting_labels(folder: Path, tmp_path: Path):
    assert main(["prepare-crohme", str(folder), "--out", str(tmp_path / "hw"), "--no-progress"]) == 0
    samples = {s.key: s.meta for p in shard_paths(tmp_path / "hw") for s in read_shard(p)}
    assert sorted(m["tokens"] for m in samples.values()) == [r"\frac { x } { 1 }", "x + 1"]
    assert load_manifest(tmp_path / "hw")["domain"] == "handwritten"


def test_prepare_formulas_renders_mathwriting_labels(folder: Path, tmp_path: Path):
    require_browser()
    assert main(["prepare-crohme", str(folder), "--out", str(tmp_path / "hw"), "--no-progress"]) == 0
    assert main(["prepare-formulas", str(folder), "--out", str(tmp_path / "r"), "--vocab", str(tmp_path / "hw"),
                 "--workers", "1", "--no-progress"]) == 0
    tokens = sorted(s.meta["tokens"] for p in shard_paths(tmp_path / "r") for s in read_shard(p))
    assert tokens == [r"\frac { x } { 1 }", "x + 1"]
    assert load_manifest(tmp_path / "r")["domain"] == "rendered"


def test_prepare_symbols_uses_the_glyph_list(folder: Path, tmp_path: Path):
    report = prepare_symbols(folder, tmp_path / "bank", progress=False)
    bank = SymbolBank(tmp_path / "bank")
    assert sorted(bank.tokens) == ["+", "1", "x"] and len(bank) == 3
    assert [len(bank.strokes(i)) for i in bank.indices("x")] == [2]
    rejects = [json.loads(line) for line in (tmp_path / "bank" / "rejects.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rejects} == {"glyph-list"} and report.rejected == 2
    assert any("not strokes of" in r["reason"] for r in rejects) and any("not a glyph-list line" in r["reason"] for r in rejects)
    assert json.loads((tmp_path / "bank" / "manifest.json").read_text())["glyph_list"] == "symbols.jsonl"
