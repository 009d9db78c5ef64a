"""prepare-crohme end to end: bad files get their reasons while the rest is written, resume,
label pre-mapping, a real slice of every CROHME source read back through webdataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from formula_gan.cli import main
from formula_gan.data.crohme_job import CrohmeConfig, iter_crohme_labels, prepare_crohme
from formula_gan.data.ink_labels import premap_label
from formula_gan.data.images import decode_png
from formula_gan.data.inkml import InkmlError
from formula_gan.data.jobs import load_manifest, shard_paths, verify
from formula_gan.data.loader import ShardSource, make_loader
from formula_gan.data.shards import read_shard
from formula_gan.data.vocab import Vocab
from formula_gan.hashing import sha256_file

from katex_render.errors import KatexRenderError
from katex_render.normalize import Reject, SourceFormula, check_katex, find_node

try:
    find_node()
    check_katex()
except KatexRenderError as err:  # the labels go through KaTeX's parser in Node
    pytest.skip(f"KaTeX normalizer unavailable: {err}", allow_module_level=True)

NS = 'xmlns="http://www.w3.org/2003/InkML"'


def inkml(traces: list[str], truth: str | None) -> str:
    label = f'<annotation type="truth">{truth}</annotation>' if truth is not None else ""
    body = "".join(f'<trace id="{i}">{t}</trace>' for i, t in enumerate(traces))
    return f"<ink {NS}>{label}{body}</ink>"


SQUARE = "0 0, 10 0, 10 10, 0 10, 0 0"
FILES = {
    "a_good.inkml": inkml([SQUARE, "20 0, 30 10"], "$x + 1$"),
    "b_malformed.inkml": "<ink><trace>1 2</ink>",
    "c_no_traces.inkml": inkml([], "$x$"),
    "d_empty_trace.inkml": inkml([SQUARE, " "], "$x$"),
    "e_no_truth.inkml": inkml([SQUARE], None),
    "f_nan.inkml": inkml(["0 0, nan 3"], "$x$"),
    "g_zero.inkml": inkml(["4 4, 4 4"], "$x$"),
    "h_bad_label.inkml": inkml([SQUARE], "$\\frac{1$"),
    "i_good_lt.inkml": inkml([SQUARE], "$a \\lt \\mbox { B }$"),
    "sub/j_good.inkml": inkml([SQUARE, "0 20, 10 30"], "\\sqrt { y }"),
    "sub/k_layout.inkml": inkml([SQUARE], "$\\sqrt {x} ABOVE {3}$"),
}
EXPECTED_REJECTS = {
    "b_malformed.inkml": "malformed-xml",
    "c_no_traces.inkml": "no-traces",
    "d_empty_trace.inkml": "empty-trace",
    "e_no_truth.inkml": "missing-truth",
    "f_nan.inkml": "non-finite",
    "g_zero.inkml": "zero-size",
    "h_bad_label.inkml": "bad-label",
    "sub/k_layout.inkml": "bad-label",
}


@pytest.fixture()
def bad_dir(tmp_path: Path) -> Path:
    root = tmp_path / "inkml"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_premap_label() -> None:
    assert premap_label("$x \\lt y$") == "x \\lt y"  # KaTeX parses \lt; the normalizer makes it <
    assert premap_label("$M\\ltN$") == "M< N"
    assert premap_label("\\mbox { z } + \\mathrm{F^1_0}") == "z + F^1_0"
    assert premap_label("$ 92\\ldots \\ $") == "92\\ldots"
    assert premap_label("a \\\\ b") == "a \\\\ b"  # a line break is not a control space
    with pytest.raises(InkmlError, match="ABOVE/BELOW"):
        premap_label("\\sqrt {x} ABOVE {q}")
    with pytest.raises(InkmlError, match="unbalanced"):
        premap_label("\\mbox { z")


def test_every_bad_file_has_its_reason_and_the_rest_is_kept(bad_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = prepare_crohme(bad_dir, out, CrohmeConfig(workers=2, shard_size=4), progress=False)
    assert (report.kept, report.rejected) == (3, len(EXPECTED_REJECTS))
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["source"]: r["kind"] for r in rejects} == EXPECTED_REJECTS
    reasons = {r["source"]: r["reason"] for r in rejects}
    assert "ABOVE/BELOW" in reasons["sub/k_layout.inkml"]
    assert reasons["h_bad_label.inkml"].startswith("unparseable label: KaTeX parse error")
    assert reasons["e_no_truth.inkml"].startswith('no label: neither <annotation type="truth"> (CROHME)')
    manifest = load_manifest(out)
    assert manifest["num_samples"] == 3 and manifest["num_rejected"] == 8 and manifest["num_shards"] == 3
    assert manifest["reject_kinds"]["malformed-xml"] == 1
    samples = {s.meta["source"]: s for p in shard_paths(out) for s in read_shard(p)}
    assert set(samples) == {"a_good.inkml", "i_good_lt.inkml", "sub/j_good.inkml"}
    assert samples["a_good.inkml"].meta["tokens"] == "x + 1"
    assert samples["i_good_lt.inkml"].meta["tokens"] == "a < B"
    assert samples["sub/j_good.inkml"].meta["tokens"] == "\\sqrt { y }"
    for s in samples.values():
        assert s.meta["domain"] == "handwritten" and s.meta["style"] is None and isinstance(s.meta["seed"], int)
        assert s.meta["latex"] == FILES[s.meta["source"]].split('"truth">')[1].split("<")[0]
        img = decode_png(s.png)
        assert img.shape[0] == 128 and img.min() < 50 and img.max() == 255
    assert manifest["vocab"]["counts"] == {"x": 1, "+": 1, "1": 1, "a": 1, "<": 1, "B": 1, "\\sqrt": 1, "{": 1,
                                            "y": 1, "}": 1}
    assert Vocab.from_manifest(out) == Vocab(manifest["vocab"]["tokens"]) == Vocab.load(out / "vocab.json")
    verify(out)


def test_resume_and_determinism(bad_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = CrohmeConfig(workers=1, shard_size=4)
    prepare_crohme(bad_dir, out, cfg, progress=False)
    first = {p.name: sha256_file(p) for p in shard_paths(out)}
    again = prepare_crohme(bad_dir, out, cfg, progress=False)
    assert again.kept == 0 and again.skipped_shards == 3 and again.manifest["num_samples"] == 3
    (out / "shard-000001.tar").unlink()
    (out / "shard-000001.json").unlink()
    redo = prepare_crohme(bad_dir, out, CrohmeConfig(workers=2, shard_size=4), progress=False)
    assert redo.skipped_shards == 2 and redo.kept + redo.rejected == 4
    assert {p.name: sha256_file(p) for p in shard_paths(out)} == first  # same bytes, any worker count
    with pytest.raises(Exception, match="different job"):
        prepare_crohme(bad_dir, out, CrohmeConfig(normalize="symbol", shard_size=4), progress=False)


def test_labels_for_rendering(bad_dir: Path) -> None:
    items = list(iter_crohme_labels(bad_dir))
    assert len(items) == len(FILES)
    formulas = {i.source: i.latex for i in items if isinstance(i, SourceFormula)}
    assert formulas["i_good_lt.inkml:1"] == "a \\lt B"
    rejected = {i.source for i in items if isinstance(i, Reject)}
    # label-only reading: the strokes are not looked at
    assert rejected == {"b_malformed.inkml:1", "e_no_truth.inkml:1", "sub/k_layout.inkml:1"}


@pytest.mark.data
def test_real_slice_end_to_end(crohme_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Ten files of every source (train and test 2014) through the CLI, read back with webdataset."""
    import webdataset as wds

    slice_dir = tmp_path / "slice"
    sources = sorted(p for p in (crohme_dir / "train").iterdir() if p.is_dir()) + [crohme_dir / "test2014"]
    for src in sources:
        (slice_dir / src.name).mkdir(parents=True)
        for f in sorted(src.glob("*.inkml"))[:10]:
            shutil.copy(f, slice_dir / src.name / f.name)
    Vocab(["1", "2", "+"]).save(tmp_path / "tiny_vocab.json")
    out = tmp_path / "out"
    rc = main(["prepare-crohme", str(slice_dir), "--out", str(out), "--workers", "2", "--shard-size", "16",
               "--no-progress", "--vocab", str(tmp_path / "tiny_vocab.json")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "prepare-crohme:" in printed and "tokens outside" in printed
    manifest = load_manifest(out)
    assert manifest["num_items"] == 10 * len(sources) and manifest["num_samples"] >= 10 * len(sources) - 2
    assert "x" in manifest["outside_vocab"] and "1" not in manifest["outside_vocab"]
    vocab = Vocab.from_manifest(out)

    ds = wds.WebDataset([str(p) for p in shard_paths(out)], shardshuffle=False)
    seen, collections = set(), set()
    for sample in ds:
        meta = json.loads(sample["json"])
        img = decode_png(sample["png"])
        assert img.shape[0] == 128 and img.dtype == np.uint8
        assert meta["domain"] == "handwritten" and meta["tokens"]
        assert vocab.UNK not in vocab.encode(meta["tokens"])
        seen.add(sample["__key__"])
        collections.add(meta["source"].split("/")[0])
    assert len(seen) == manifest["num_samples"]
    assert collections == {s.name for s in sources}  # every source's scale and format made it

    loader = make_loader([ShardSource(str(out))], vocab, 8, shuffle=True, seed=0)
    keys = [k for batch in loader for k in batch.keys]
    assert sorted(keys) == sorted(seen)


@pytest.mark.data
def test_real_symbol_normalization(crohme_dir: Path, tmp_path: Path) -> None:
    slice_dir = tmp_path / "slice"
    slice_dir.mkdir()
    for src in sorted(p for p in (crohme_dir / "train").iterdir() if p.is_dir()):
        for f in sorted(src.glob("*.inkml"))[:2]:
            shutil.copy(f, slice_dir / f"{src.name}_{f.name}")
    report = prepare_crohme(slice_dir, tmp_path / "out", CrohmeConfig(normalize="symbol"), progress=False)
    heights = []
    for p in shard_paths(tmp_path / "out"):
        for s in read_shard(p):
            assert s.meta["ink"]["symbol_estimate"] == "groups"
            heights.append(decode_png(s.png).shape[0])
    assert report.kept == len(heights) >= 10
    assert min(heights) < 128 and max(heights) != min(heights)  # sizes follow the layout, not a fixed height
