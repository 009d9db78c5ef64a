"""What the GAN loop reads: pairs (source batch, real-target batch), one pair per step.

``GanData.batches(start_step)`` yields the pairs of steps ``start_step, start_step + 1, …``
and must give a resumed run exactly the batches an uninterrupted run would have seen.
``TensorGanData`` holds both sets in memory and draws the batch of step s from
(seed, s, rank) — used by the tests and by small experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from formula_gan.data.batch import Batch
from formula_gan.errors import FormulaGanError


class GanDataError(FormulaGanError):
    """An empty or mismatched GAN data set."""


class GanData(Protocol):
    vocab_size: int
    vocab_tokens: list[str] | None  # stored in checkpoints so that the task model can be read later

    def batches(self, start_step: int) -> Iterator[tuple[Batch, Batch]]: ...


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


class TensorGanData:
    def __init__(self, source: TensorSet, real: TensorSet, vocab_size: int, batch_size: int, seed: int,
                 rank: int = 0, vocab_tokens: list[str] | None = None) -> None:
        check_pair(source, real, vocab_size)
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

    def batches(self, start_step: int) -> Iterator[tuple[Batch, Batch]]:
        step = start_step
        while True:
            yield self.batch_at(step)
            step += 1


def check_pair(source: TensorSet, real: TensorSet, vocab_size: int) -> None:
    for name, s in (("source", source), ("real", real)):
        h, w = s.images.shape[-2:]
        if h % 16 or w % 16:
            raise GanDataError(f"{name} images are {h}×{w}; the GAN needs height and width that are multiples of 16")
        top = int(s.tokens.max()) if s.tokens.numel() else 0
        if top >= vocab_size:
            raise GanDataError(f"{name} tokens use id {top}, outside the vocabulary of {vocab_size}")
