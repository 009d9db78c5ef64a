"""The batch that every model in the project consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Domain ids as the models see them. The GAN has two domains (rendered, handwritten);
# synthetic samples are the generator's handwriting and count as handwritten there.
DOMAIN_IDS = {"rendered": 0, "handwritten": 1, "synthetic": 1}


@dataclass
class Batch:
    images: torch.Tensor  # [b, 1, h, w] float, ink = 1, background = 0
    masks: torch.Tensor  # [b, h, w] bool, True on real pixels, False on padding
    tokens: torch.Tensor  # [b, t] long token ids, padded with the vocabulary's pad id (no sos/eos)
    lengths: torch.Tensor  # [b] long, number of real tokens per sample
    domains: torch.Tensor  # [b] long, see DOMAIN_IDS
    keys: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.images), move(self.masks), move(self.tokens), move(self.lengths), move(self.domains), self.keys)
