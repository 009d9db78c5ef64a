"""``formula-gan split``: whole formulas and whole writers on one side, a pure function of the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formula_gan.cli import main
from formula_gan.data.ink_labels import read_label
from formula_gan.data.inkml import MATHWRITING, parse_inkml
from formula_gan.data.split import assign, split_inkml
from formula_gan.errors import FormulaGanError

NS = 'xmlns="http://www.w3.org/2003/InkML"'
TRACE = '<trace id="0">10 10, 20 20, 30 10</trace>'


def crohme_file(label: str, writer: str | None = None) -> str:
    who = f'<annotation type="writer">{writer}</annotation>' if writer is not None else ""
    return f'<ink {NS}><annotation type="truth">${label}$</annotation>{who}{TRACE}</ink>'


def mathwriting_file(label: str, normalized: str | None) -> str:
    norm = f'<annotation type="normalizedLabel">{normalized}</annotation>' if normalized is not None else ""
    return (f'<ink {NS}><annotation type="label">{label}</annotation>{norm}'
            f'<annotation type="splitTagOriginal">train</annotation><trace>1 2 0, 3 4 1, 5 1 2</trace></ink>')


def write_corpus(root: Path) -> dict[str, str]:
    """60 formulas by 30 writers, some formulas written twice (in two spellings), one writer
    with many formulas, a few files naming nobody; returns file -> formula id."""
    files = {}
    for i in range(60):
        spellings = [f"x^{{{i}}}+{{y}}", f"{{x^{{{i}}}}}+y"]  # the same formula, braces apart
        for j, text in enumerate(spellings[: 1 + (i % 3 == 0)]):
            writer = "Unknown" if i % 17 == 5 else f"W{(i + j) % 30}"
            rel = f"src{i % 2}/f{i:02d}_{j}.inkml"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(crohme_file(text, writer))
            files[rel] = f"formula{i}"
    return files


def sides(out: Path) -> dict[str, str]:
    listing = json.loads((out / "split.json").read_text())["files"]
    return {rel: part for part, rels in listing.items() for rel in rels}


def test_formulas_and_writers_never_cross(tmp_path: Path) -> None:
    files = write_corpus(tmp_path / "ink")
    report = split_inkml(tmp_path / "ink", tmp_path / "split", val_share=0.2)
    side = sides(tmp_path / "split")
    assert set(side) == set(files)
    assert report.files["val"] > 0 and report.files["train"] > 0
    by_formula: dict[str, set[str]] = {}
    for rel, formula in files.items():
        by_formula.setdefault(formula, set()).add(side[rel])
    assert all(len(parts) == 1 for parts in by_formula.values()), "a formula on both sides"
    by_writer: dict[str, set[str]] = {}
    for rel in files:
        text = (tmp_path / "ink" / rel).read_text()
        writer = text.split('type="writer">')[1].split("<")[0]
        if writer != "Unknown":  # names nobody: not a person to keep together
            by_writer.setdefault(f"{rel.split('/')[0]}|{writer}", set()).add(side[rel])
    assert all(len(parts) == 1 for parts in by_writer.values()), "a writer on both sides"
    # the links point at the files, named by their path
    for part in ("train", "val"):
        for link in (tmp_path / "split" / part).iterdir():
            assert link.is_symlink() and link.resolve().is_file()
            assert side[link.name.replace("__", "/")] == part


def test_pure_function_of_labels_writers_and_seed(tmp_path: Path) -> None:
    write_corpus(tmp_path / "ink")
    split_inkml(tmp_path / "ink", tmp_path / "a", val_share=0.2, seed=3)
    split_inkml(tmp_path / "ink", tmp_path / "b", val_share=0.2, seed=3)
    split_inkml(tmp_path / "ink", tmp_path / "c", val_share=0.2, seed=4)
    assert sides(tmp_path / "a") == sides(tmp_path / "b")
    assert sides(tmp_path / "a") != sides(tmp_path / "c")


def test_share_is_reached_without_giant_groups_swinging_it() -> None:
    # one group of 500 files (a prolific writer), 500 singletons: 5 % must not become 50 %
    formulas = [f"f{i}" for i in range(1000)]
    writers = ["prolific" if i < 500 else None for i in range(1000)]
    for seed in range(5):
        parts, groups, largest = assign(formulas, writers, 0.05, seed)
        assert (groups, largest) == (501, 500)
        assert 45 <= parts.count("val") <= 55
        assert all(p == parts[0] for p in parts[:500])


def test_bad_requests_are_refused_before_any_work(tmp_path: Path) -> None:
    write_corpus(tmp_path / "ink")
    split_inkml(tmp_path / "ink", tmp_path / "split")
    before = sides(tmp_path / "split")
    with pytest.raises(FormulaGanError, match="already holds a split"):
        split_inkml(tmp_path / "ink", tmp_path / "split")
    assert sides(tmp_path / "split") == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(FormulaGanError, match="is a file"):
        split_inkml(tmp_path / "ink", tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormulaGanError, match="no .inkml files"):
        split_inkml(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["split", str(tmp_path / "ink"), "--out", str(tmp_path / "o"), "--val-share", "1.5"]) == 2
    assert not (tmp_path / "o").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_corpus(tmp_path / "ink")
    assert main(["split", str(tmp_path / "ink"), "--out", str(tmp_path / "s"), "--val-share", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "none of them in train" in out
    assert len(list((tmp_path / "s" / "val").iterdir())) + len(list((tmp_path / "s" / "train").iterdir())) == 80


def test_mathwriting_dialect(tmp_path: Path) -> None:
    ink = parse_inkml(mathwriting_file(r"\frac{a}{b}", r"\frac{a}{b}").encode())
    assert ink.dialect == MATHWRITING and ink.truth == r"\frac{a}{b}" and ink.writer is None
    assert ink.strokes[0].shape == (3, 2)  # x y t: time dropped
    # the ground truth is normalizedLabel; a single glyph (symbols/) has only label
    (tmp_path / "a.inkml").write_text(mathwriting_file(r"x  \over y", r"\frac{x}{y}"))
    (tmp_path / "b.inkml").write_text(mathwriting_file("f", None))
    assert read_label(tmp_path / "a.inkml") == r"\frac{x}{y}"
    assert read_label(tmp_path / "b.inkml") == "f"
    # a MathWriting folder splits by formula (no writers named)
    for i in range(20):
        (tmp_path / "mw" / f"{i:016x}.inkml").parent.mkdir(exist_ok=True)
        (tmp_path / "mw" / f"{i:016x}.inkml").write_text(mathwriting_file(f"x_{i % 10}", f"x_{{{i % 10}}}"))
    report = split_inkml(tmp_path / "mw", tmp_path / "mw-split", val_share=0.2)
    assert report.formulas["val"] + report.formulas["train"] == 10 and report.writers == {"train": 0, "val": 0}


def test_real_crohme_split(crohme_dir: Path, tmp_path: Path) -> None:
    report = split_inkml(crohme_dir / "train", tmp_path / "split")
    assert 0.04 <= report.files["val"] / (report.files["val"] + report.files["train"]) <= 0.06
    assert report.formulas["val"] >= 200 and report.writers["val"] >= 5
