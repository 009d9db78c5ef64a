"""Vocab: ids, specials, round trips through JSON and shard manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample
from formula_gan.data.vocab import SPECIALS, Vocab
from formula_gan.errors import FormulaGanError

TOKENS = ["x", "+", "1", "\\frac", "{", "}", "\\alpha"]


def test_specials_and_ids_are_stable() -> None:
    v = Vocab(TOKENS)
    assert (v.PAD, v.SOS, v.EOS, v.UNK) == (0, 1, 2, 3)
    assert v.itos[:4] == list(SPECIALS)
    assert len(v) == 4 + len(TOKENS)
    assert Vocab(reversed(TOKENS + ["x"])) == v  # order and duplicates of the input do not matter


def test_encode_decode_round_trip() -> None:
    v = Vocab(TOKENS)
    seq = "\\frac { 1 } { x + \\alpha }".split()
    ids = v.encode(seq, add_sos=True, add_eos=True)
    assert ids[0] == v.SOS and ids[-1] == v.EOS and v.UNK not in ids
    assert v.decode(ids) == seq
    assert v.decode(ids + [v.PAD, v.PAD]) == seq
    assert v.encode("x + y") == [v.stoi["x"], v.stoi["+"], v.UNK]
    assert v.unknown("x y \\beta y".split()) == ["y", "\\beta"]
    assert v.decode(v.encode("x y"), strip=True) == ["x", "<unk>"]


def test_save_load(tmp_path: Path) -> None:
    v = Vocab(TOKENS)
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v
    (tmp_path / "bad.json").write_text(json.dumps({"tokens": TOKENS}))
    with pytest.raises(FormulaGanError, match="not a formula-gan-vocab"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(FormulaGanError, match="not found"):
        Vocab.load(tmp_path / "none.json")


def test_rejects_whitespace_tokens() -> None:
    with pytest.raises(ValueError):
        Vocab(["a b"])


def _shards(out: Path, token_lines: list[str], extra: dict | None, stats: bool) -> None:
    job = ShardedJob(out, {"kind": "test"}, 2).open()
    png = encode_png(np.full((8, 8), 255, np.uint8))
    for chunk in job.pending(list(enumerate(token_lines))):
        samples = [Sample(f"k{i}", png, {"tokens": t, "domain": "rendered"}) for i, t in chunk.items]
        counts = {}
        for _, t in chunk.items:
            for tok in t.split():
                counts[tok] = counts.get(tok, 0) + 1
        job.commit(chunk.index, ShardResult(samples, stats={"token_counts": counts} if stats else {}))
    job.finalize(extra)


@pytest.mark.parametrize("how", ["manifest", "stats", "scan"])
def test_from_manifest(tmp_path: Path, how: str) -> None:
    lines = ["x + 1", "\\frac { 1 } { x }", "\\alpha"]
    extra = {"vocab": {"tokens": sorted(set(" ".join(lines).split()))}} if how == "manifest" else None
    _shards(tmp_path, lines, extra, stats=how == "stats")
    v = Vocab.from_manifest(tmp_path)
    assert v == Vocab(" ".join(lines).split())
