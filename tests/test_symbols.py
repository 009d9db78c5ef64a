"""prepare-symbols: every trace group of real InkML files, by token and writer, in one
compact file; unusable groups and files are rejects with reasons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.prepare_symbols import FEW, REJECTS, prepare_symbols
from formula_gan.data.symbol_bank import BANK, MANIFEST, SymbolBank
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


def _segmented(traces: list[str], groups: list[tuple[str, list[int]]]) -> str:
    """An InkML file with the given traces and leaf trace groups (label, trace numbers)."""
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    views = ["".join(f'<traceView traceDataRef="{r}"/>' for r in refs) for _, refs in groups]
    leaves = "".join(f'<traceGroup xml:id="g{i}"><annotation type="truth">{label}</annotation>{v}</traceGroup>'
                     for i, ((label, _), v) in enumerate(zip(groups, views)))
    return ('<ink xmlns="http://www.w3.org/2003/InkML"><annotation type="truth">$x$</annotation>'
            '<annotation type="writer">w9</annotation>' + body
            + f'<traceGroup xml:id="s"><annotation type="truth">Segmentation</annotation>{leaves}</traceGroup></ink>')


def test_a_shared_stroke_or_an_empty_group_is_a_reject_not_a_glyph(tmp_path: Path):
    """A stroke in two trace groups became a glyph of each symbol; a leaf group naming no trace
    vanished without a reject."""
    root = tmp_path / "in"
    root.mkdir()
    traces = ["0 30, 50 100", "50 30, 0 100", "100 30, 125 70", "150 30, 110 130", "200 20, 225 0, 225 100"]
    groups = [("x", [0, 1]), ("y", [1, 2]), ("1", [4]), ("2", []), ("y", [3, 3])]
    (root / "f.inkml").write_text(_segmented(traces, groups), encoding="utf-8")
    report = prepare_symbols(root, tmp_path / "bank", progress=False)
    rejects = {r["group"]: r for r in map(json.loads, (tmp_path / "bank" / REJECTS).read_text().splitlines())}
    assert sorted(rejects) == [0, 1, 3, 4] and report.rejected == 4
    assert rejects[0]["kind"] == rejects[1]["kind"] == "shared-trace"
    assert rejects[0]["reason"] == "trace 1 is also in trace group 1 ('y'): one stroke cannot be two symbols"
    assert rejects[1]["reason"] == "trace 1 is also in trace group 0 ('x'): one stroke cannot be two symbols"
    assert rejects[3]["kind"] == "empty-group" and rejects[3]["label"] == "2"
    assert rejects[4]["kind"] == "shared-trace" and "also in trace group this one, twice" in rejects[4]["reason"]
    bank = SymbolBank(tmp_path / "bank")
    assert [bank.glyph(i).token for i in range(len(bank))] == ["1"]  # the one group that is its own


def _crafted(bank_dir: Path, tmp_path: Path, name: str, change) -> Path:
    """A copy of the good bank's arrays, changed by ``change(arrays)``, saved as numpy would."""
    with np.load(bank_dir / BANK, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _set(name: str, at: int, value) -> object:
    def change(a: dict) -> None:
        a[name] = a[name].copy()
        a[name][at] = value
    return change


CRAFTED = {
    # name: (change, what the error says)
    "token index out of range": (lambda a: _set("glyph_token", 0, len(a["tokens"]))(a), "glyph_token holds indices outside"),
    "writer index negative": (_set("glyph_writer", 3, -1), "glyph_writer holds indices outside"),
    "file index out of range": (lambda a: _set("glyph_file", -1, 10**6)(a), "glyph_file holds indices outside"),
    "NaN points": (_set("points", 5, np.nan), "points holds NaN or infinite values"),
    "infinite size": (_set("glyph_size", 2, np.inf), "glyph_size holds NaN or infinite values"),
    "negative stroke offset": (_set("stroke_start", 1, -4), "stroke_start is not strictly increasing"),
    "negative glyph offset": (_set("glyph_start", 2, -1), "glyph_start is not strictly increasing"),
    "offsets past the end": (lambda a: _set("stroke_start", -1, len(a["points"]) + 9)(a), "stroke_start must run from 0"),
    "inconsistent lengths": (lambda a: a.update(glyph_file=a["glyph_file"][:-1]), "inconsistent lengths"),
    "size of the wrong shape": (lambda a: a.update(glyph_size=a["glyph_size"][:, :1]), "must be [n, 2]"),
    "points as text": (lambda a: a.update(points=a["points"].astype(str)), "points holds <U"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_bank_is_one_clear_error_naming_the_file(case: str, bank_dir: Path, tmp_path: Path):
    change, message = CRAFTED[case]
    path = _crafted(bank_dir, tmp_path, "crafted", change)
    with pytest.raises(FormulaGanError) as info:
        SymbolBank(path)
    text = str(info.value)
    assert text.startswith(f"{path}: not a usable symbol bank: ") and message in text and "\n" not in text
    assert len(SymbolBank(_crafted(bank_dir, tmp_path, "unchanged", lambda a: None))) == len(SymbolBank(bank_dir))


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
    reasons = report.reasons
    assert reasons["malformed-xml"] <= 2  # the only unusable training files are two broken XML files
    assert set(reasons) <= {"malformed-xml", "outlier"} and reasons["outlier"] <= 0.002 * report.glyphs
    heights = np.array([bank.glyph_size[i][1] for i in bank.indices("x")])
    assert 0.4 < np.median(heights) < 1.2, "an x is about one symbol height in every source's units"
    assert bank.has("-") and bank.has("\\sqrt") and bank.has("<")


def test_outliers_are_left_out_and_counted(tmp_path: Path):
    """Twenty-five writers' x, one of them a scribble labelled x: the scribble goes, counted."""
    from formula_gan.data.bank_curation import outliers
    from formula_gan.data.symbol_bank import Glyph

    t = np.linspace(0, 1, 12)
    cross = [np.stack([t, t], 1).astype(np.float32), np.stack([t, 1 - t], 1).astype(np.float32)]
    rng = np.random.default_rng(0)
    glyphs = [Glyph("x", f"w{i}", f"f{i}", [s + rng.normal(0, 0.02, s.shape).astype(np.float32) for s in cross], 1, 1)
              for i in range(25)]
    ring = np.stack([0.5 + 0.5 * np.cos(6 * t), 0.5 + 0.5 * np.sin(6 * t)], 1).astype(np.float32)
    glyphs.append(Glyph("x", "odd", "f-odd", [ring], 1, 1))
    assert outliers(glyphs) == {25}
    assert outliers(glyphs[:10] + [glyphs[25]]) == set(), "too few glyphs of a token to call one odd"


def test_whole_writers_cover_every_token_and_rare_ones_are_topped_up():
    from formula_gan.data.bank_curation import choose_writers
    from formula_gan.data.symbol_bank import Glyph

    stroke = [np.zeros((2, 2), np.float32)]
    glyphs = [Glyph(tok, w, f"{w}-{k}", stroke, 1, 1) for w, toks in
              [("a", "xyz"), ("b", "xy"), ("c", "q"), ("d", "xyzq"), ("e", "x")] for k, tok in enumerate(toks * 3)]
    glyphs += [Glyph("r", "file:lonely", "lonely", stroke, 1, 1)]
    chosen = choose_writers(glyphs, writers=1, min_per_token=0)
    assert chosen.writers == ["d"] and {g.writer for g in chosen.kept} == {"d"}
    assert len(chosen.kept) == 12, "all of the chosen writer's glyphs"
    topped = choose_writers(glyphs, writers=1, min_per_token=4)
    assert topped.topped_up == {"q": 1, "x": 1, "y": 1, "z": 1, "r": 1}
    assert {g.token for g in topped.kept} == {"x", "y", "z", "q", "r"}


def test_a_bank_that_does_not_match_its_manifest_checksum_is_refused(bank_dir: Path, tmp_path: Path, capsys):
    import shutil

    copy = tmp_path / "bank"
    shutil.copytree(bank_dir, copy)
    SymbolBank(copy)  # as written: loads
    data = bytearray((copy / BANK).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: numpy may well still read it, the checksum does not
    (copy / BANK).write_bytes(bytes(data))
    with pytest.raises(FormulaGanError, match=f"{BANK}: does not match the checksum in {MANIFEST}"):
        SymbolBank(copy)
    formulas = tmp_path / "f.txt"
    formulas.write_text("x+1\n")
    assert main(["synthesize", str(formulas), "--symbols", str(copy), "--out", str(tmp_path / "out")]) == 2
    assert "does not match the checksum" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_packaged_bank_loads_with_its_checksum_and_covers_crohme():
    from formula_gan.synthesis.methods.stitch import DEFAULT_BANK

    bank = SymbolBank(DEFAULT_BANK)
    manifest = json.loads((DEFAULT_BANK / MANIFEST).read_text())
    assert (DEFAULT_BANK / BANK).stat().st_size <= 3_000_000 and len(bank) == manifest["glyphs"]
    assert len(bank.tokens) == 101 and (DEFAULT_BANK / "NOTICE").is_file()
    assert "CC BY-NC-SA" in (DEFAULT_BANK / "NOTICE").read_text()
