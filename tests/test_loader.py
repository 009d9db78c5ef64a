"""make_loader: batch shapes and masks, width bucketing, source weights, rank/worker splits,
determinism, looping, and clear errors for missing, empty, truncated and corrupt shard sets."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from formula_gan.data.images import encode_png
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.loader import ShardSource, make_loader, resize_paper
from formula_gan.data.shards import Sample, ShardError
from formula_gan.data.vocab import Vocab

VOCAB = Vocab(["x", "+", "1", "2", "=", "y"])


def make_set(out: Path, n: int, domain: str, per_shard: int = 10, seed: int = 0, prefix: str | None = None) -> list[str]:
    """n samples with random sizes (h 16..48, w 8..160) and token strings; returns their keys."""
    rng = np.random.default_rng(seed)
    job = ShardedJob(out, {"kind": "test", "seed": seed}, per_shard).open()
    keys = []
    for chunk in job.pending(range(n)):
        samples = []
        for i in chunk.items:
            h, w = int(rng.integers(16, 49)), int(rng.integers(8, 161))
            paper = np.full((h, w), 255, np.uint8)
            paper[2:-2, 2:-2] = 0  # ink fills the image but a 2 px border
            ntok = int(rng.integers(1, 6))
            tokens = " ".join(rng.choice(["x", "+", "1", "2", "=", "y", "\\beta"], ntok))
            key = f"{prefix or domain}-{i:05d}"
            keys.append(key)
            samples.append(Sample(key, encode_png(paper), {"tokens": tokens, "domain": domain, "w": w, "h": h}))
        job.commit(chunk.index, ShardResult(samples))
    job.finalize()
    return keys


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[str]]]:
    root = tmp_path_factory.mktemp("loader")
    return {
        "hw": (root / "hw", make_set(root / "hw", 120, "handwritten", seed=1)),
        "rd": (root / "rd", make_set(root / "rd", 90, "rendered", seed=2)),
        "small": (root / "small", make_set(root / "small", 7, "handwritten", per_shard=4, seed=3, prefix="s")),
    }


def keys_of(loader) -> list[str]:
    return [k for batch in loader for k in batch.keys]


def test_batch_shapes_masks_tokens(sets) -> None:
    path, keys = sets["hw"]
    loader = make_loader([ShardSource(str(path))], VOCAB, 8, height=32, max_width=64, shuffle=False, seed=0)
    seen = 0
    for batch in loader:
        b, _, H, W = batch.images.shape
        assert batch.masks.shape == (b, H, W) and batch.masks.dtype == torch.bool
        assert H <= 32 and W <= 64 and batch.tokens.shape[0] == b
        for i in range(b):
            h = int(batch.masks[i].any(1).sum())
            w = int(batch.masks[i].any(0).sum())
            assert batch.masks[i, :h, :w].all() and not batch.masks[i, h:].any() and not batch.masks[i, :, w:].any()
            assert h == 32 or w == 64  # resized to height 32, unless the width cap shrank it
            assert batch.images[i, 0][~batch.masks[i]].abs().sum() == 0  # padding is background (0)
            assert batch.images[i, 0, h // 2, w // 2] > 0.9  # ink = 1
            n = int(batch.lengths[i])
            assert (batch.tokens[i, n:] == VOCAB.PAD).all() and (batch.tokens[i, :n] != VOCAB.PAD).all()
        assert (batch.domains == 1).all()
        seen += b
    assert seen == len(keys)


def test_bucketing_keeps_padding_small(sets) -> None:
    path, _ = sets["hw"]

    def waste(bucket_batches: int) -> float:
        from formula_gan.data.loader import ShardLoader, ShardStream

        ds = ShardStream([ShardSource(str(path))], VOCAB, 8, height=32, max_width=None, shuffle=True, seed=3,
                         bucket_batches=bucket_batches)
        masks = [b.masks for b in ShardLoader(ds)]
        return 1 - sum(m.float().sum() for m in masks).item() / sum(m.numel() for m in masks)

    assert waste(16) < 0.5 * waste(1)  # sorted buckets vs batches in arrival order


def test_source_weights_are_followed(sets) -> None:
    (hw, _), (rd, _) = sets["hw"], sets["rd"]
    loader = make_loader([ShardSource(str(hw), 3.0), ShardSource(str(rd), 1.0)], VOCAB, 16, height=16,
                         max_width=32, shuffle=True, seed=5, loop=True)
    domains = Counter()
    for i, batch in enumerate(loader):
        domains.update(batch.domains.tolist())
        if i == 60:
            break
    frac = domains[1] / sum(domains.values())
    assert abs(frac - 0.75) < 0.05, frac  # 976 draws: 3 standard deviations = 0.04


@pytest.mark.parametrize("source", ["hw", "small"])  # 12 shards (split by shard) and 2 (split by sample)
def test_rank_split_is_disjoint_and_complete(sets, source: str) -> None:
    path, keys = sets[source]
    parts = [
        keys_of(make_loader([ShardSource(str(path))], VOCAB, 4, height=16, max_width=32, shuffle=True, seed=9,
                            rank=r, world_size=3))
        for r in range(3)
    ]
    flat = [k for p in parts for k in p]
    assert len(flat) == len(set(flat)) and set(flat) == set(keys)
    assert all(parts)


def test_workers_split_and_determinism(sets) -> None:
    path, keys = sets["hw"]
    make = lambda seed, workers: make_loader(  # noqa: E731
        [ShardSource(str(path))], VOCAB, 8, height=16, max_width=32, shuffle=True, seed=seed, num_workers=workers)
    a = keys_of(make(1, 2))
    assert sorted(a) == sorted(keys)
    assert a == keys_of(make(1, 2))  # same seed, same order
    b = keys_of(make(1, 0))
    assert sorted(b) == sorted(keys) and b == keys_of(make(1, 0)) and b != keys_of(make(2, 0))


def test_epochs_reshuffle_and_loop(sets) -> None:
    path, keys = sets["hw"]
    loader = make_loader([ShardSource(str(path))], VOCAB, 8, height=16, shuffle=True, seed=1)
    e0, e1 = keys_of(loader), keys_of(loader)
    assert sorted(e0) == sorted(e1) and e0 != e1 and loader.epoch == 2
    looping = make_loader([ShardSource(str(path))], VOCAB, 8, height=16, shuffle=True, seed=1, loop=True)
    count = Counter()
    for i, batch in enumerate(looping):
        count.update(batch.keys)
        if i == 40:  # 41 * 8 = 328 > 2 epochs of 120
            break
    assert set(count) == set(keys) and max(count.values()) >= 2


def test_filters_drop_oversize_and_long_labels(sets) -> None:
    path, keys = sets["hw"]
    from formula_gan.data.shards import read_shard
    from formula_gan.data.jobs import shard_paths

    metas = {s.key: s.meta for p in shard_paths(path) for s in read_shard(p)}
    # at height 32, width w * 32 / h must stay <= 64; labels at most 3 tokens
    want = {k for k, m in metas.items() if m["w"] * 32 / m["h"] <= 64 and len(m["tokens"].split()) <= 3}
    assert 0 < len(want) < len(keys)
    loader = make_loader([ShardSource(str(path))], VOCAB, 8, height=32, max_width=64, shuffle=True, seed=0,
                         drop_oversize=True, max_tokens=3)
    got = [k for b in loader for k in b.keys]
    assert sorted(got) == sorted(want)


def test_resize_paper_caps_width() -> None:
    paper = np.zeros((50, 1000), np.uint8)
    assert resize_paper(paper, 128, 512).shape == (26, 512)  # aspect kept (50 * 0.512), shorter than 128
    assert resize_paper(paper, 128, None).shape == (128, 2560)
    assert resize_paper(paper, None, None).shape == (50, 1000)
    assert resize_paper(np.zeros((50, 100), np.uint8), 128, 512, keep_scale=True).shape == (50, 100)
    assert resize_paper(np.zeros((200, 100), np.uint8), 128, 512, keep_scale=True).shape == (128, 64)


def test_keep_scale_pads_batches_to_height(sets) -> None:
    path, keys = sets["hw"]
    loader = make_loader([ShardSource(str(path))], VOCAB, 8, height=40, max_width=None, shuffle=False, seed=0,
                         keep_scale=True)
    n = 0
    for batch in loader:
        assert batch.images.shape[2] == 40  # every batch exactly `height` rows
        rows = batch.masks.any(2).sum(1)  # [b] real heights: native (16..48), only the tallest shrunk
        assert rows.max() <= 40 and rows.min() >= 16
        n += len(batch)
    assert n == len(keys)


def test_errors_name_the_problem(sets, tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="not found"):
        make_loader([ShardSource(str(tmp_path / "nope"))], VOCAB, 4, shuffle=False, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no manifest.json"):
        make_loader([ShardSource(str(tmp_path / "empty"))], VOCAB, 4, shuffle=False, seed=0)
    with pytest.raises(ShardError, match="no shard sources"):
        make_loader([], VOCAB, 4, shuffle=False, seed=0)
    job = ShardedJob(tmp_path / "zero", {"kind": "test"}, 4).open()
    list(job.pending([]))
    job.finalize()
    with pytest.raises(ShardError, match="holds no samples"):
        make_loader([ShardSource(str(tmp_path / "zero"))], VOCAB, 4, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="weights"):
        make_loader([ShardSource(str(sets["hw"][0]), 0.0)], VOCAB, 4, shuffle=False, seed=0)


def test_truncated_and_corrupt_shards_are_named(sets, tmp_path: Path) -> None:
    src = sets["hw"][0]
    cut = tmp_path / "cut"
    shutil.copytree(src, cut)
    shard = cut / "shard-000003.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(ShardError, match="shard-000003.tar.*truncated"):
        make_loader([ShardSource(str(cut))], VOCAB, 4, shuffle=False, seed=0)

    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    shard = bad / "shard-000005.tar"
    data = bytearray(shard.read_bytes())
    data[0:512] = b"\x07" * 512  # the first tar header is garbage, size unchanged
    shard.write_bytes(bytes(data))
    loader = make_loader([ShardSource(str(bad))], VOCAB, 4, height=16, shuffle=False, seed=0)
    with pytest.raises(ShardError, match="shard-000005.tar"):
        keys_of(loader)
