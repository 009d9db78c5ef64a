"""What the GAN loop reads: pairs (source batch, real-target batch), one pair per step.

Here, as in the GAN step, ``source`` is a batch of the generator's inputs (the source
domain); the shard folders they are read from are ``shard_sources`` (the data
loader's ``ShardSource``).

``GanData.iterator(state)`` yields the pairs from a position saved in a checkpoint
(``state()`` of a previous iterator, plain ints) or from the start (``None``), so that
a resumed run sees exactly the batches an uninterrupted one would have seen.

- ``ShardGanData``: the shard folders of the config through the data layer's loader:
  rendered (+ handwritten unless ``handwritten_source`` is off) as generator
  inputs; handwritten (+ rendered with ``swap_target_domain``) as real targets. The
  position is (epoch, batches read in that epoch) per loader; a resume replays at most
  one epoch's batches of reading, never the whole run.
- ``TensorGanData``: both sets in memory; the batch of step s is drawn from (seed, s, rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch
import torch.nn.functional as F

from formula_gan.data.batch import DOMAIN_IDS, Batch
from formula_gan.data.jobs import load_manifest
from formula_gan.data.loader import ShardSource, make_loader
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from formula_gan.models.generator import STRIDE

if TYPE_CHECKING:
    from formula_gan.training.distributed import DistInfo
    from formula_gan.training.gan_config import GanConfig

MULTIPLE = STRIDE  # the generator and discriminator halve the size four times


class GanDataError(FormulaGanError):
    """An empty or mismatched GAN data set."""


class GanBatches(Protocol):
    def __iter__(self) -> Iterator[tuple[Batch, Batch]]: ...
    def __next__(self) -> tuple[Batch, Batch]: ...
    def state(self) -> dict[str, Any]: ...


class GanData(Protocol):
    vocab_size: int
    vocab_tokens: list[str] | None  # stored in checkpoints so that the task model can be read later

    def iterator(self, state: dict[str, Any] | None) -> GanBatches: ...


def pad_to_multiple(batch: Batch, multiple: int = MULTIPLE) -> Batch:
    """Pad images (background) and masks (False) at the bottom/right to multiples of ``multiple``."""
    h, w = batch.images.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return batch
    images = F.pad(batch.images, (0, pw, 0, ph))  # [b, 1, H, W]
    masks = F.pad(batch.masks, (0, pw, 0, ph), value=False)  # [b, H, W]
    return Batch(images, masks, batch.tokens, batch.lengths, batch.domains, batch.keys)


# ---- in memory -------------------------------------------------------------------------


@dataclass
class TensorSet:
    """Equal-sized images held as tensors."""

    images: torch.Tensor  # [n, 1, h, w] ink = 1
    tokens: torch.Tensor  # [n, t] padded with PAD (0), no SOS/EOS
    lengths: torch.Tensor  # [n]
    domains: torch.Tensor  # [n]
    masks: torch.Tensor | None = None  # [n, h, w]; None = all real

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if n == 0:
            raise GanDataError("empty data set: no images")
        if self.masks is None:
            self.masks = torch.ones(n, *self.images.shape[-2:], dtype=torch.bool)
        for name in ("tokens", "lengths", "domains", "masks"):
            if getattr(self, name).shape[0] != n:
                raise GanDataError(f"{name} has {getattr(self, name).shape[0]} rows for {n} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor) -> Batch:
        return Batch(self.images[index], self.masks[index], self.tokens[index], self.lengths[index],
                     self.domains[index], [f"{int(i)}" for i in index])


class _TensorBatches:
    def __init__(self, data: "TensorGanData", step: int) -> None:
        self.data, self.step = data, step

    def __iter__(self) -> "_TensorBatches":
        return self

    def __next__(self) -> tuple[Batch, Batch]:
        pair = self.data.batch_at(self.step)
        self.step += 1
        return pair

    def state(self) -> dict[str, Any]:
        return {"step": self.step}


class TensorGanData:
    def __init__(self, source: TensorSet, real: TensorSet, vocab_size: int, batch_size: int, seed: int,
                 rank: int = 0, vocab_tokens: list[str] | None = None) -> None:
        for name, s in (("source", source), ("real", real)):
            h, w = s.images.shape[-2:]
            if h % MULTIPLE or w % MULTIPLE:
                raise GanDataError(f"{name} images are {h}×{w}; the GAN needs sizes that are multiples of {MULTIPLE}")
            top = int(s.tokens.max()) if s.tokens.numel() else 0
            if top >= vocab_size:
                raise GanDataError(f"{name} tokens use id {top}, outside the vocabulary of {vocab_size}")
        self.source, self.real = source, real
        self.vocab_size = vocab_size
        self.vocab_tokens = vocab_tokens
        self.batch_size = batch_size
        self.seed, self.rank = seed, rank

    def batch_at(self, step: int) -> tuple[Batch, Batch]:
        g = torch.Generator().manual_seed((self.seed * 7_919 + step) * 131 + self.rank)
        i = torch.randint(len(self.source), (self.batch_size,), generator=g)
        j = torch.randint(len(self.real), (self.batch_size,), generator=g)
        return self.source.batch(i), self.real.batch(j)

    def iterator(self, state: dict[str, Any] | None) -> _TensorBatches:
        return _TensorBatches(self, int(state["step"]) if state else 0)


# ---- shard folders ---------------------------------------------------------------------


class _Cursor:
    """Endless batches of a (non-looping) shard loader, epoch after epoch, with a resumable position."""

    def __init__(self, loader: Any, name: str, epoch: int = 0, index: int = 0) -> None:
        self.loader, self.name = loader, name
        self.epoch, self.index = epoch, index
        self._it: Iterator[Batch] | None = None

    def __next__(self) -> Batch:
        while True:
            if self._it is None:
                self.loader.set_epoch(self.epoch)
                self._it = iter(self.loader)
                for skipped in range(self.index):  # replay the part of this epoch read before the checkpoint
                    if next(self._it, None) is None:
                        raise GanDataError(f"{self.name}: the data changed since the checkpoint (epoch {self.epoch} "
                                           f"has {skipped} batches, the checkpoint read {self.index})")
            batch = next(self._it, None)
            if batch is not None:
                self.index += 1
                return pad_to_multiple(batch)
            if self.index == 0:
                raise GanDataError(f"{self.name}: no batches (fewer samples than one batch on this rank?)")
            self.epoch, self.index, self._it = self.epoch + 1, 0, None

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


class _ShardBatches:
    """Source batches (one cursor, or rendered + handwritten halves joined) paired with real batches."""

    def __init__(self, source_cursors: list[_Cursor], real: _Cursor, check_source: int | None,
                 check_real: int | None) -> None:
        self.source_cursors, self.real = source_cursors, real
        self.check_source, self.check_real = check_source, check_real

    def __iter__(self) -> "_ShardBatches":
        return self

    def __next__(self) -> tuple[Batch, Batch]:
        source = join_batches([next(cursor) for cursor in self.source_cursors])
        real = next(self.real)
        _check_domain(source, self.check_source, "data.rendered (the generator's only inputs)")
        _check_domain(real, self.check_real, "data.handwritten (the real targets)")
        return source, real

    def state(self) -> dict[str, Any]:
        keys = ("source", "source_handwritten")
        return {**{k: c.state() for k, c in zip(keys, self.source_cursors)}, "real": self.real.state()}


def join_batches(batches: list[Batch]) -> Batch:
    """One batch of several, padded (background, mask False) to a common size."""
    if len(batches) == 1:
        return batches[0]
    h = max(b.images.shape[-2] for b in batches)
    w = max(b.images.shape[-1] for b in batches)
    t = max(b.tokens.shape[1] for b in batches)
    return Batch(
        torch.cat([F.pad(b.images, (0, w - b.images.shape[-1], 0, h - b.images.shape[-2])) for b in batches]),
        torch.cat([F.pad(b.masks, (0, w - b.masks.shape[-1], 0, h - b.masks.shape[-2]), value=False) for b in batches]),
        torch.cat([F.pad(b.tokens, (0, t - b.tokens.shape[1])) for b in batches]),  # PAD is 0
        torch.cat([b.lengths for b in batches]),
        torch.cat([b.domains for b in batches]),
        [k for b in batches for k in b.keys],
    )


def _check_domain(batch: Batch, expected: int | None, where: str) -> None:
    if expected is not None and bool((batch.domains != expected).any()):
        found = sorted({k for k, v in DOMAIN_IDS.items() if v in set(batch.domains.tolist()) and v != expected})
        raise GanDataError(f"{where} holds samples of domain {found}: a rendered and a handwritten folder are swapped?")


class ShardGanData:
    def __init__(self, cfg: "GanConfig", info: "DistInfo") -> None:
        d = cfg.data
        if not d.rendered:
            raise GanDataError("data.rendered is empty: name the rendered shard folders (formula-gan prepare-formulas)")
        if not d.handwritten:
            raise GanDataError("data.handwritten is empty: name the handwritten shard folders (formula-gan prepare-crohme)")
        for key, paths, expected in (("data.rendered", d.rendered, d.source_domain), ("data.handwritten", d.handwritten, "handwritten")):
            for path in paths:
                found = load_manifest(path).get("domain")
                if found is not None and found != expected:
                    raise GanDataError(f"{key}: {path} holds {found!r} samples, expected {expected!r}")
        vocab = Vocab.load(d.vocab) if d.vocab else Vocab.union(*(Vocab.from_manifest(p) for p in d.rendered + d.handwritten))
        self.vocab_size = len(vocab)
        self.vocab_tokens = list(vocab.itos)
        rendered = [ShardSource(p) for p in d.rendered]
        handwritten = [ShardSource(p) for p in d.handwritten]
        real = (rendered if cfg.swap_target_domain else []) + handwritten

        def loader(shard_sources: list[ShardSource], seed: int, batch_size: int) -> Any:
            # drop_oversize: the paper's width filter (<= max_width at the working height) drops wider
            # images instead of shrinking them, which would change their scale
            return make_loader(shard_sources, vocab, batch_size, height=d.height, max_width=d.max_width, shuffle=True,
                               seed=seed, rank=info.rank, world_size=info.world_size, num_workers=d.num_workers,
                               loop=False, drop_last=True, drop_oversize=True, frame=d.frame,
                               pin_memory=info.device.type == "cuda")

        if cfg.handwritten_source:
            # Generator inputs from both domains, half and half in every batch: width-sorted batches
            # of one mixed stream come out single-domain (the domains differ in width), and G's
            # BatchNorm statistics would then depend on which domain filled the batch.
            half = max(1, d.batch_size // 2)
            self._source_loaders = (loader(rendered, cfg.seed, d.batch_size - half), loader(handwritten, cfg.seed + 2, half))
        else:
            self._source_loaders = (loader(rendered, cfg.seed, d.batch_size),)
        self._real = loader(real, cfg.seed + 1, d.batch_size)
        self._check_source = DOMAIN_IDS[d.source_domain] if not cfg.handwritten_source else None
        self._check_real = DOMAIN_IDS["handwritten"] if not cfg.swap_target_domain else None

    def iterator(self, state: dict[str, Any] | None) -> _ShardBatches:
        state = state or {}
        names = ("generator inputs", "handwritten generator inputs")
        cursors = [
            _Cursor(loader, name, **state.get(key, {}))
            for loader, name, key in zip(self._source_loaders, names, ("source", "source_handwritten"))
        ]
        real = _Cursor(self._real, "real targets", **state.get("real", {}))
        return _ShardBatches(cursors, real, self._check_source, self._check_real)


def shard_gan_data(cfg: "GanConfig", info: "DistInfo") -> ShardGanData:
    return ShardGanData(cfg, info)
