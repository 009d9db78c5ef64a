"""prepare-symbols: every trace group of real InkML files, by token and writer, in one
compact file; unusable groups and files are rejects with reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.symbol_bank import BANK, FEW, MANIFEST, REJECTS, SymbolBank, prepare_symbols
from formula_gan.errors import FormulaGanError
from katex_render.errors import KatexRenderError
from katex_render.normalize import check_katex, find_node
from symbol_files import SHAPES, inkml, write_symbol_files

try:
    find_node()
    check_katex()
except KatexRenderError as err:  # labels go through KaTeX's parser in Node
    pytest.skip(f"KaTeX normalizer unavailable: {err}", allow_module_level=True)


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_symbol_files(tmp_path_factory.mktemp("inkml") / "in")
    # unusable: a label that is two symbols, a group naming a trace the file lacks, a broken file
    (root / "bad_groups.inkml").write_text(
        inkml([("ab", SHAPES["x"]), ("x", SHAPES["x"])], writer="w3").replace('traceDataRef="2"', 'traceDataRef="99"'),
        encoding="utf-8")
    (root / "broken.inkml").write_text("<ink><trace>1 2</ink>", encoding="utf-8")
    out = root.parent / "bank"
    assert main(["prepare-symbols", str(root), "--out", str(out), "--no-progress"]) == 0
    return out


def test_bank_holds_every_usable_group_by_token_and_writer(bank_dir: Path):
    bank = SymbolBank(bank_dir)
    manifest = json.loads((bank_dir / MANIFEST).read_text())
    # w1: 2 files x 13 symbols, w2: 12, anon: 6
    assert len(bank) == manifest["glyphs"] == 2 * 13 + 12 + 6
    assert manifest["counts"]["x"] == bank.count("x") == 4
    assert bank.has("<") and not bank.has("\\lt"), "labels are mapped to the project's tokens (\\lt is <)"
    assert bank.count("\\sqrt") == 2 and manifest["labels"]["\\sqrt"] == "\\sqrt"
    assert set(bank.writers) == {"w1", "w2", "file:anon.inkml"}, "a file without a writer is its own writer"
    w1 = bank.writers.index("w1")
    assert len(bank.indices("x", w1)) == 2 and len(bank.indices("\\sqrt", bank.writers.index("w2"))) == 0
    assert manifest["few"] == {"threshold": FEW, "tokens": {t: n for t, n in manifest["counts"].items() if n < FEW}}


def test_glyphs_are_in_symbol_heights_whatever_the_tablet_scale(bank_dir: Path):
    bank = SymbolBank(bank_dir)
    by_writer = {}
    for i in bank.indices("x"):
        glyph = bank.glyph(int(i))
        pts = np.concatenate(glyph.strokes)
        assert pts.min() >= -1e-3, "top-left corner at 0"
        assert abs(pts[:, 1].max() - glyph.height) < 0.02 and abs(pts[:, 0].max() - glyph.width) < 0.02
        by_writer[glyph.writer] = glyph.height
    # x is 0.7 of the file's median symbol height in every file, at scale 100 and at 0.01
    assert by_writer["w1"] == pytest.approx(by_writer["w2"], rel=0.1)
    assert 0.5 < by_writer["w2"] < 1.0


def test_unusable_groups_and_files_are_rejects_with_reasons(bank_dir: Path):
    rejects = [json.loads(line) for line in (bank_dir / REJECTS).read_text().splitlines()]
    by_kind = {r["kind"]: r for r in rejects}
    assert set(by_kind) == {"label", "missing-trace", "malformed-xml"}
    assert "not one symbol" in by_kind["label"]["reason"] and by_kind["label"]["label"] == "ab"
    assert "99" in by_kind["missing-trace"]["reason"] and by_kind["missing-trace"]["source"] == "bad_groups.inkml"
    assert by_kind["malformed-xml"]["source"] == "broken.inkml" and by_kind["malformed-xml"]["group"] is None
    manifest = json.loads((bank_dir / MANIFEST).read_text())
    assert manifest["rejected"] == len(rejects) == 3 and manifest["files"] == 6


def test_cli_reports_the_tokens_with_few_samples(tmp_path: Path, capsys):
    root = write_symbol_files(tmp_path / "in")
    assert main(["prepare-symbols", str(root), "--out", str(tmp_path / "bank"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"tokens with fewer than {FEW} samples:" in out and "\\sqrt (2)" in out
    first = (tmp_path / "bank" / BANK).read_bytes()
    assert main(["prepare-symbols", str(root), "--out", str(tmp_path / "bank"), "--no-progress"]) == 0
    assert (tmp_path / "bank" / BANK).read_bytes() == first, "a rerun writes the same bank"


def test_a_damaged_bank_or_a_wrong_folder_is_a_clear_error(bank_dir: Path, tmp_path: Path, capsys):
    with pytest.raises(FormulaGanError, match="no symbol bank"):
        SymbolBank(tmp_path)
    broken = tmp_path / "cut"
    broken.mkdir()
    data = (bank_dir / BANK).read_bytes()
    (broken / BANK).write_bytes(data[: len(data) // 2])
    with pytest.raises(FormulaGanError, match="not a symbol bank"):
        SymbolBank(broken)
    assert main(["prepare-symbols", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare-symbols", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .inkml files" in capsys.readouterr().err


@pytest.mark.data
def test_real_crohme_slice(crohme_dir: Path, tmp_path: Path):
    """Forty files of every CROHME training source: every source's groups make it in."""
    slice_dir = tmp_path / "slice"
    sources = sorted(p for p in (crohme_dir / "train").iterdir() if p.is_dir())
    for src in sources:
        (slice_dir / src.name).mkdir(parents=True)
        for f in sorted(src.glob("*.inkml"))[:40]:
            shutil.copy(f, slice_dir / src.name / f.name)
    report = prepare_symbols(slice_dir, tmp_path / "bank", progress=False)
    bank = SymbolBank(tmp_path / "bank")
    assert report.glyphs == len(bank) > 40 * len(sources) * 3
    assert {f.split("/")[0] for f in bank.files} == {s.name for s in sources}
    assert report.rejected <= 2  # the only unusable training files are two broken XML files
    heights = np.array([bank.glyph_size[i][1] for i in bank.indices("x")])
    assert 0.4 < np.median(heights) < 1.2, "an x is about one symbol height in every source's units"
    assert bank.has("-") and bank.has("\\sqrt") and bank.has("<")
