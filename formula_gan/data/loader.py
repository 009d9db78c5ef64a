"""Batches for training: shard sets -> ``Batch`` (images padded with masks, token ids, domains).

The pipeline, per DataLoader worker (stages in order):

1. **split** every source's shards across all readers (DDP ranks x DataLoader
   workers): shard ``j`` of the epoch's (seeded, rank-independent) order goes to
   reader ``j % readers``. A source with fewer shards than readers is split by
   sample instead (every reader scans it, keeps every ``readers``-th sample), so
   small sets such as CROHME (9 shards) still reach every GPU and worker.
2. **read** tar shards with ``webdataset``'s tar iterator and key grouping; a
   truncated or corrupt shard is a ``ShardError`` naming the file (never skipped
   silently: a quiet loss of data changes what a model learns).
3. **shuffle** raw (still encoded) samples in a seeded buffer.
4. **mix** sources: each sample is drawn from source ``i`` with probability
   ``weight_i / sum(weights)`` (the paper draws CROHME and GAN data equally).
5. **decode** PNG (images.py), **resize** to ``height`` keeping the aspect ratio;
   wider than ``max_width`` after that -> scaled down to ``max_width`` (height
   then falls short of ``height`` and is padded, masked). With ``keep_scale``
   (for ``symbol``-normalized shards, whose point is their scale) images are
   only shrunk to fit ``height`` x ``max_width``, never enlarged, and every batch
   is padded to exactly ``height`` rows. ``height=None``: native sizes.
   ``frame``: each image is first cropped to its ink with a margin in
   proportion to its height, as CROHME is rasterized (``framing.py``).
   Filters (the paper's, for GAN training): ``drop_oversize`` drops samples wider
   than ``max_width`` at ``height`` instead of shrinking them; ``max_tokens`` drops
   longer labels. Both decide per sample, deterministically.
6. **bucket**: hold ``batch_size * bucket_batches`` samples, sort by width, cut
   into batches, emit the batches in seeded random order: padding stays small
   without fixing the batch composition.
7. **collate** into ``Batch`` (ink = 1 via images.py; images at the top-left of
   the padded canvas; masks True on real pixels), then optional augmentation.

Determinism: everything random is drawn from generators seeded by (seed, epoch,
reader index, source), so a given seed, world size and worker count give the same
batches on every run.
"""

from __future__ import annotations

import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_iterator

from formula_gan.data.augment import AugmentConfig, augment_batch
from formula_gan.data.batch import DOMAIN_IDS, Batch
from formula_gan.data.framing import frame_ink
from formula_gan.data.images import decode_png, paper_to_ink
from formula_gan.data.jobs import load_manifest
from formula_gan.data.shards import ShardError, member_key
from formula_gan.data.vocab import Vocab

SHUFFLE_BUFFER = 1000  # raw samples (PNG bytes, ~2-8 kB each): a few MB per source and reader
BUCKET_BATCHES = 16  # decoded samples held for width bucketing = batch_size * 16


@dataclass
class ShardSource:
    path: str  # a finished shard folder (with manifest.json)
    weight: float = 1.0  # relative sampling weight when several sources are mixed


@dataclass(frozen=True)
class _Shard:
    path: Path
    samples: int
    bytes: int


def _resolve(source: ShardSource) -> list[_Shard]:
    path = Path(source.path)
    if not path.is_dir():
        raise ShardError(f"shard folder not found: {path}")
    manifest = load_manifest(path)
    shards = []
    for info in manifest.get("shards", []):
        f = path / info["name"]
        if not f.is_file():
            raise ShardError(f"{f}: listed in {path / 'manifest.json'} but missing")
        if f.stat().st_size != info["bytes"]:
            raise ShardError(f"{f}: {f.stat().st_size} bytes, manifest says {info['bytes']} (truncated or modified)")
        if info["samples"] > 0:
            shards.append(_Shard(f, int(info["samples"]), int(info["bytes"])))
    if not shards:
        raise ShardError(f"{path}: the shard set holds no samples")
    return shards


def iter_shard_samples(path: str | Path, expected: int | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one tar shard through webdataset: {"__key__", "png", "json"} (json parsed)."""
    path = Path(path)
    count = 0
    try:
        with open(path, "rb") as stream:
            files = (_checked_member(f, path) for f in tar_file_iterator(stream))
            for sample in group_by_keys(files):
                if "png" not in sample or "json" not in sample:
                    raise ShardError(f"{path}: sample {sample['__key__']!r} lacks its .png or .json")
                sample["json"] = json.loads(sample["json"].decode("utf-8"))
                count += 1
                yield sample
    except ShardError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        raise ShardError(f"{path}: corrupt or truncated shard ({err})") from err
    if expected is not None and count != expected:
        raise ShardError(f"{path}: {count} samples, manifest says {expected} (truncated or modified)")


def _checked_member(member: dict[str, Any], path: Path) -> dict[str, Any]:
    """A tar member of ``path`` whose name is ``<key>.<ext>`` with a safe key (keys are untrusted:
    they name files downstream), with the shard's path as its ``__url__``."""
    member_key(member["fname"], path)
    return {**member, "__url__": str(path)}


def resize_paper(paper: np.ndarray, height: int | None, max_width: int | None, keep_scale: bool = False) -> np.ndarray:
    """uint8 [h, w] -> uint8 [h', w']: to ``height`` keeping aspect, then capped at ``max_width``
    (``keep_scale``: only shrunk to fit, never enlarged)."""
    h, w = paper.shape
    scale = 1.0 if height is None else height / h
    if keep_scale:
        scale = min(scale, 1.0)
    if max_width is not None and w * scale > max_width:
        scale = max_width / w
    if scale == 1.0:
        return paper
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if max_width is not None:
        nw = min(nw, max_width)
    if height is not None:
        nh = min(nh, height)
    # PIL's bilinear filter widens its support when shrinking, i.e. it anti-aliases
    return np.array(Image.fromarray(paper).resize((nw, nh), Image.BILINEAR), dtype=np.uint8)  # writable copy


def collate(items: list[tuple[str, np.ndarray, list[int], int]], min_height: int = 0) -> Batch:
    """[(key, paper uint8 [h, w], token ids, domain id)] -> Batch padded to the largest h, w
    (and to at least ``min_height`` rows)."""
    b = len(items)
    H = max(min_height, max(p.shape[0] for _, p, _, _ in items))
    W = max(p.shape[1] for _, p, _, _ in items)
    T = max(len(t) for _, _, t, _ in items)
    # One white uint8 canvas for the whole batch, converted once (per-sample float
    # conversions cost ~10x more): padding is paper, hence ink 0 after conversion.
    canvas = np.full((b * H, W), 255, dtype=np.uint8)  # [b*H, W] paper
    masks = torch.zeros(b, H, W, dtype=torch.bool)  # [b, H, W]
    tokens = torch.full((b, T), Vocab.PAD, dtype=torch.long)  # [b, T]
    lengths = torch.zeros(b, dtype=torch.long)
    domains = torch.zeros(b, dtype=torch.long)
    for i, (_, paper, ids, dom) in enumerate(items):
        h, w = paper.shape
        canvas[i * H : i * H + h, :w] = paper
        masks[i, :h, :w] = True
        tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        lengths[i] = len(ids)
        domains[i] = dom
    images = paper_to_ink(canvas).view(b, 1, H, W)  # [b, 1, H, W], ink = 1, background 0
    return Batch(images, masks, tokens, lengths, domains, [k for k, _, _, _ in items])


class ShardStream(torch.utils.data.IterableDataset):
    """The pipeline of the module docstring; yields ``Batch`` objects (use batch_size=None)."""

    def __init__(
        self,
        sources: list[ShardSource],
        vocab: Vocab,
        batch_size: int,
        *,
        height: int | None = 128,
        max_width: int | None = 512,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        augment: "AugmentConfig | None" = None,
        loop: bool = False,
        keep_scale: bool = False,
        frame: bool = False,
        drop_oversize: bool = False,
        max_tokens: int | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        bucket_batches: int = BUCKET_BATCHES,
        drop_last: bool = False,
    ):
        super().__init__()
        if not sources:
            raise ShardError("no shard sources given")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        weights = [float(s.weight) for s in sources]
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {weights}")
        self.sources = sources
        self.shards = [_resolve(s) for s in sources]
        self.weights = weights
        self.vocab = vocab
        self.batch_size = batch_size
        self.height, self.max_width = height, max_width
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.augment = augment
        self.loop = loop
        self.keep_scale = keep_scale
        self.frame = frame
        self.drop_oversize = drop_oversize
        self.max_tokens = max_tokens
        self.shuffle_buffer = shuffle_buffer if shuffle else 0
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.epoch = 0

    def num_samples(self) -> list[int]:
        return [sum(s.samples for s in shards) for shards in self.shards]

    # ---- stages -------------------------------------------------------------------
    def _reader(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def _source_stream(self, src: int, me: int, readers: int) -> Iterator[dict[str, Any]]:
        """Raw samples of one source for this reader, epoch after epoch if looping."""
        epoch = self.epoch
        while True:
            order = list(self.shards[src])
            if self.shuffle:
                random.Random(f"{self.seed}/{epoch}/{src}/order").shuffle(order)  # same on every reader
            by_shard = len(order) >= readers
            mine = order[me::readers] if by_shard else order
            rng = random.Random(f"{self.seed}/{epoch}/{src}/{me}/buffer")
            buffer: list[dict[str, Any]] = []
            n = 0
            for shard in mine:
                for sample in iter_shard_samples(shard.path, shard.samples):
                    n += 1
                    if not by_shard and (n - 1) % readers != me:
                        continue
                    if self.shuffle_buffer:
                        buffer.append(sample)
                        if len(buffer) >= self.shuffle_buffer:
                            j = rng.randrange(len(buffer))
                            buffer[j], buffer[-1] = buffer[-1], buffer[j]
                            yield buffer.pop()
                    else:
                        yield sample
            rng.shuffle(buffer)
            yield from buffer
            if not self.loop:
                return
            epoch += 1

    def _mixed(self, me: int, readers: int) -> Iterator[dict[str, Any]]:
        streams = [self._source_stream(i, me, readers) for i in range(len(self.sources))]
        active = [i for i, w in enumerate(self.weights) if w > 0]
        rng = random.Random(f"{self.seed}/{self.epoch}/{me}/mix")
        while active:
            i = rng.choices(active, weights=[self.weights[a] for a in active])[0] if len(active) > 1 else active[0]
            sample = next(streams[i], None)
            if sample is None:  # only without loop: a finished source drops out of the mix
                active.remove(i)
                continue
            yield sample

    def _decode(self, sample: dict[str, Any]) -> tuple[str, np.ndarray, list[int], int] | None:
        """Decoded, resized and encoded sample, or None when a filter drops it."""
        meta = sample["json"]
        ids = self.vocab.encode(str(meta.get("tokens", "")))
        if self.max_tokens is not None and len(ids) > self.max_tokens:
            return None
        try:
            paper = decode_png(sample["png"])
        except (OSError, ValueError) as err:
            raise ShardError(f"{sample.get('__url__')}: sample {sample['__key__']!r} has an unreadable PNG ({err})") from err
        if self.frame:
            paper = frame_ink(paper)
        if self.drop_oversize and self.max_width is not None:
            h, w = paper.shape
            scale = 1.0 if self.height is None else self.height / h
            if self.keep_scale:
                scale = min(scale, 1.0)
            if w * scale > self.max_width:
                return None
        paper = resize_paper(paper, self.height, self.max_width, self.keep_scale)
        domain = DOMAIN_IDS.get(meta.get("domain", ""))
        if domain is None:
            raise ShardError(f"{sample.get('__url__')}: sample {sample['__key__']!r} has unknown domain {meta.get('domain')!r}")
        return sample["__key__"], paper, ids, domain

    def __iter__(self) -> Iterator[Batch]:
        me, readers = self._reader()
        rng = random.Random(f"{self.seed}/{self.epoch}/{me}/bucket")
        gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, me)) & 0x7FFF_FFFF_FFFF) if self.augment else None
        hold = self.batch_size * max(1, self.bucket_batches)
        pending: list[tuple[str, np.ndarray, list[int], int]] = []
        for sample in self._mixed(me, readers):
            item = self._decode(sample)
            if item is None:
                continue
            pending.append(item)
            if len(pending) >= hold:
                yield from self._emit(pending, rng, gen, final=False)
                pending = []
        if pending:
            yield from self._emit(pending, rng, gen, final=True)

    def _emit(self, items: list, rng: random.Random, gen: torch.Generator | None, final: bool) -> Iterator[Batch]:
        items = sorted(items, key=lambda it: (it[1].shape[1], it[1].shape[0], it[0]))  # by width
        groups = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        if final and self.drop_last and groups and len(groups[-1]) < self.batch_size:
            groups.pop()
        if self.shuffle:
            rng.shuffle(groups)
        for group in groups:
            batch = collate(group, self.height if self.keep_scale and self.height else 0)
            if self.augment is not None:
                batch = augment_batch(batch, self.augment, gen)
            yield batch


class ShardLoader:
    """Iterable of ``Batch``; each ``iter()`` is a new epoch (reshuffled from seed + epoch)."""

    def __init__(self, dataset: ShardStream, num_workers: int = 0, pin_memory: bool = False):
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=None,  # the dataset yields whole batches (bucketed by width)
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )
        try:
            yield from loader
        finally:
            self.dataset.epoch += 1


def make_loader(
    sources: list[ShardSource] | Iterable[ShardSource],
    vocab: Vocab,
    batch_size: int,
    *,
    height: int | None = 128,
    max_width: int | None = 512,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    augment: "AugmentConfig | None" = None,
    loop: bool = False,
    keep_scale: bool = False,
    frame: bool = False,
    drop_oversize: bool = False,
    max_tokens: int | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> ShardLoader:
    """Batches over one or more shard sets; see the module docstring for what happens.

    ``loop=True``: endless (GAN training), every source restarting with a new shuffle
    when it runs out, so the mix keeps its weights. ``loop=False``: one epoch; a source
    that runs out leaves the mix. With several ranks and ``loop=False``, ranks may get a
    different number of batches (shards hold different counts): train on ``loop=True``
    with a step budget, or let the training loop agree on the step count.
    """
    dataset = ShardStream(
        list(sources), vocab, batch_size, height=height, max_width=max_width, shuffle=shuffle, seed=seed,
        rank=rank, world_size=world_size, augment=augment, loop=loop, keep_scale=keep_scale, frame=frame,
        drop_oversize=drop_oversize, max_tokens=max_tokens, drop_last=drop_last,
    )
    return ShardLoader(dataset, num_workers=num_workers, pin_memory=pin_memory)
