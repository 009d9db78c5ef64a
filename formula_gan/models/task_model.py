"""The GAN's task model: a small recognizer whose loss tells the generator to keep the formula readable.

DenseNet encoder (three blocks of six layers, growth 24) + GRU decoder with Bahdanau
attention, teacher-forced cross-entropy over ``tokens EOS``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.models.attention_decoder import PAD, AttentionGRUDecoder, teacher_forcing
from formula_gan.models.densenet import DenseNetEncoder


class TaskModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        growth: int = 24,
        block_layers: tuple[int, ...] = (6, 6, 6),
        init_channels: int = 48,
        embed_dim: int = 256,
        hidden: int = 256,
        attn_dim: int = 256,
        coverage: bool = False,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = dict(
            vocab_size=vocab_size, growth=growth, block_layers=list(block_layers), init_channels=init_channels,
            embed_dim=embed_dim, hidden=hidden, attn_dim=attn_dim, coverage=coverage,
        )
        self.encoder = DenseNetEncoder(1, growth, tuple(block_layers), init_channels)
        self.decoder = AttentionGRUDecoder(vocab_size, self.encoder.out_channels, embed_dim, hidden, attn_dim, coverage)

    def logits(self, images: torch.Tensor, masks: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [b, 1, h, w], masks [b, h, w], tokens [b, t] (no SOS/EOS), lengths [b]
        -> (logits [b, t+1, vocab], target [b, t+1] padded with PAD)."""
        feat, feat_mask = self.encoder(images, masks)  # [b, c, h/16, w/16]
        tokens_in, target = teacher_forcing(tokens, lengths)
        return self.decoder(feat, feat_mask, tokens_in), target

    def forward(self, images: torch.Tensor, masks: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy over real target tokens, teacher-forced token accuracy (detached)).

        The loss is what ``forward`` returns so that a DDP wrapper sees the whole computation."""
        logits, target = self.logits(images, masks, tokens, lengths)
        logits = logits.float()
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=PAD)
        real = target != PAD
        accuracy = ((logits.argmax(-1) == target) & real).sum() / real.sum().clamp_min(1)
        return loss, accuracy.detach()
