"""Projection discriminator with self-attention.

    DownBlock 1 -> 64d /2,  DownBlock 64d -> 128d /4,  (self-attention after ``attention_after`` blocks),
    DownBlock 128d -> 256d /8,  DownBlock 256d -> 512d /16,  ReLU, global sum pooling -> feat [b, 512d]
    score = linear(feat) + sum(embed(domain) * feat, dim=1)

The projection is computed per sample. (The released code summed it over the whole
batch, so every sample's score depended on the others.) There is no BatchNorm here, so
a sample's score depends only on that sample, in training and in eval mode.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.models.layers import DownBlock, SelfAttention, channels, embedding, layer_factories

BLOCKS = (1, 2, 4, 8)  # ×64d output channels per down-sampling block


class Discriminator(nn.Module):
    def __init__(
        self,
        width: float = 1.0,
        n_domains: int = 2,
        attention: bool = True,
        attention_after: int = 2,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if attention and not 0 < attention_after < len(BLOCKS):
            raise ValueError(f"attention_after must be between 1 and {len(BLOCKS) - 1}, got {attention_after}")
        self.config: dict[str, Any] = dict(
            width=width, n_domains=n_domains, attention=attention, attention_after=attention_after, spectral_norm=spectral_norm
        )
        which_conv, which_linear = layer_factories(spectral_norm)
        ch = channels(64, BLOCKS, width)
        self.blocks = nn.ModuleList(
            DownBlock(cin, cout, which_conv, preactivation=i > 0) for i, (cin, cout) in enumerate(zip([1] + ch[:-1], ch))
        )
        self.attention_after = attention_after if attention else 0
        self.attention = SelfAttention(ch[attention_after - 1], which_conv) if attention else None
        self.linear = which_linear(ch[-1], 1)
        self.embed = embedding(n_domains, ch[-1], sn=spectral_norm)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feat = x  # [b, 1, h, w]
        for i, block in enumerate(self.blocks):
            feat = block(feat)  # [b, c, h/2^(i+1), w/2^(i+1)]
            if i + 1 == self.attention_after:
                feat = self.attention(feat)
        return F.relu(feat).sum(dim=(2, 3))  # [b, 512d] global sum pooling

    def forward(self, x: torch.Tensor, domain: torch.Tensor) -> torch.Tensor:
        """x [b, 1, h, w], domain [b] long -> score [b] (float32)."""
        feat = self.features(x)  # [b, 512d]
        projection = (self.embed(domain) * feat).sum(dim=1)  # [b]: per sample, never over the batch
        return (self.linear(feat).squeeze(1) + projection).float()
