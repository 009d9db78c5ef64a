"""Helpers shared by the GAN tests (no tests here): tiny configs, toy stroke images, shard folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from formula_gan.data.images import encode_png, ink_to_paper
from formula_gan.data.jobs import ShardedJob, ShardResult
from formula_gan.data.shards import Sample
from formula_gan.training.gan_config import GanConfig, load_gan_config
from formula_gan.training.gan_data import TensorGanData, TensorSet

# Narrow networks, 32-px images, every output each step: the GAN's code paths at CPU cost.
TINY = [
    "model.width=0.125", "model.z_dim=20", "model.class_dim=16",
    "task.growth=8", "task.block_layers=[2,2,2]", "task.init_channels=16",
    "task.embed_dim=32", "task.hidden=32", "task.attn_dim=32",
    "channels_last=false", "precision=fp32", "device=cpu", "progress=false",
]
GLYPHS = 6  # toy token ids 4 .. 9 (0..3 are PAD, SOS, EOS, UNK)
VOCAB_SIZE = 4 + GLYPHS


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared two-core machine this is faster and steadier than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(tmp_path: Path, *overrides: str, path: str | None = None) -> GanConfig:
    return load_gan_config(path, [f"out_dir={tmp_path / 'run'}", *TINY, *overrides])


def draw_glyphs(n: int, seed: int, h: int = 32, w: int = 64, slots: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """n images [n, 1, h, w] of ``slots`` one-pixel-thin glyphs (| - / \\ + box) and their token ids [n, slots]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, h, w)
    tokens = torch.zeros(n, slots, dtype=torch.long)
    size = 14
    r = torch.arange(size)
    for i in range(n):
        img = images[i, 0]
        for s in range(slots):
            glyph = int(torch.randint(GLYPHS, (1,), generator=g))
            tokens[i, s] = 4 + glyph
            x0 = 4 + s * 20 + int(torch.randint(0, 3, (1,), generator=g))
            y0 = 6 + int(torch.randint(0, 4, (1,), generator=g))
            if glyph in (0, 4):
                img[y0 + r, x0 + size // 2] = 1  # |
            if glyph in (1, 4):
                img[y0 + size // 2, x0 + r] = 1  # -
            if glyph == 2:
                img[y0 + r, x0 + size - 1 - r] = 1  # /
            if glyph == 3:
                img[y0 + r, x0 + r] = 1  # \
            if glyph == 5:  # box
                img[y0, x0 + r] = img[y0 + size - 1, x0 + r] = 1
                img[y0 + r, x0] = img[y0 + r, x0 + size - 1] = 1
    return images, tokens


def thicken(x: torch.Tensor) -> torch.Tensor:
    """The same strokes, three pixels wide."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def toy_data(n: int = 64, seed: int = 0, batch_size: int = 4, w: int = 64, slots: int = 3) -> TensorGanData:
    """Thin glyphs (domain 0) as generator inputs, thick glyphs of other sequences (domain 1) as real targets."""
    thin, t1 = draw_glyphs(n, seed, w=w, slots=slots)
    other, t2 = draw_glyphs(n, seed + 1, w=w, slots=slots)
    lengths = torch.full((n,), t1.shape[1])
    source = TensorSet(thin, t1, lengths, torch.zeros(n, dtype=torch.long))
    real = TensorSet(thicken(other), t2, lengths, torch.ones(n, dtype=torch.long))
    return TensorGanData(source, real, VOCAB_SIZE, batch_size, seed)


def write_shard_folder(out: Path, domain: str, n: int = 12, seed: int = 0) -> Path:
    """A finished shard folder (manifest with domain and vocab) of toy glyph images of mixed widths."""
    images, tokens = draw_glyphs(n, seed, w=80)
    rng = np.random.default_rng(seed)
    names = ["|", "-", "/", "\\backslash", "+", "\\square"]
    job = ShardedJob(out, {"kind": "gan-test", "domain": domain, "seed": seed}, 6).open()
    for chunk in job.pending(range(n)):
        samples = []
        for i in chunk.items:
            w = int(rng.integers(40, 81))  # widths that are not multiples of 16
            img = images[i, :, :30, :w]
            if domain == "handwritten":
                img = thicken(img)
            toks = " ".join(names[int(t) - 4] for t in tokens[i] if int(t) - 4 < len(names))
            samples.append(Sample(f"{domain}-{i:04d}", encode_png(ink_to_paper(img)), {"tokens": toks, "domain": domain}))
        job.commit(chunk.index, ShardResult(samples))
    job.finalize({"domain": domain, "vocab": {"tokens": names}})
    return out
