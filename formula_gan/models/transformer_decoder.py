"""Transformer decoder over a 2-D feature map (BTTR / CoMER style).

The encoder's feature map is projected to ``d_model``, given a 2-D sinusoidal
position encoding (half the channels encode x, half y, positions normalized by
the real, unpadded extent of each image so that padding does not shift them),
and flattened into the memory that a standard ``nn.TransformerDecoder`` attends
to. Tokens get a 1-D sinusoidal position encoding and a causal mask.

Bidirectional training (BTTR) is done by the caller with the same decoder: the
right-to-left sequence starts with the end token and ends with the start token;
nothing here depends on the direction.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """[...] float positions -> [..., dim] (sin on even channels, cos on odd)."""
    i = torch.arange(dim // 2, device=positions.device, dtype=torch.float32)
    freq = temperature ** (-2 * i / dim)  # [dim/2]
    angle = positions.float().unsqueeze(-1) * freq  # [..., dim/2]
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # [..., dim]


def image_position_encoding(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """mask [b, h, w] bool (True = real) -> [b, h, w, dim]: x and y encoded in ``dim/2`` channels each,
    positions scaled to [0, 2π] over each image's real extent (DETR / BTTR)."""
    real = mask.float()
    y = real.cumsum(1)  # [b, h, w] rows of real cells so far
    x = real.cumsum(2)
    eps = 1e-6
    y = y / (y[:, -1:, :] + eps) * 2 * math.pi
    x = x / (x[:, :, -1:] + eps) * 2 * math.pi
    half = dim // 2
    return torch.cat([sinusoid(y, half, 10000.0 / (2 * math.pi)), sinusoid(x, half, 10000.0 / (2 * math.pi))], dim=-1)


class TransformerDecoder(nn.Module):
    """``forward(feat, feat_mask, tokens_in) -> logits`` (teacher forcing) and ``init_state``/``step``
    for the beam search (see ``beam_search.StepFn``)."""

    def __init__(
        self,
        vocab_size: int,
        feat_channels: int,
        d_model: int = 256,  # BTTR's width
        nhead: int = 8,
        num_layers: int = 3,  # BTTR: 3 layers are enough on CROHME's ~9k formulas
        dim_feedforward: int = 1024,
        dropout: float = 0.3,  # BTTR's value; CROHME is small and overfits quickly
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if d_model % 4:
            raise ValueError(f"d_model must be a multiple of 4 (2-D sin/cos encoding), got {d_model}")
        self.d_model = d_model
        self.pad_id = pad_id
        self.feat_proj = nn.Conv2d(feat_channels, d_model, 1)
        self.feat_norm = nn.LayerNorm(d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.embed_norm = nn.LayerNorm(d_model)
        layer = nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.layers = nn.TransformerDecoder(layer, num_layers)
        self.out = nn.Linear(d_model, vocab_size)

    def memory(self, feat: torch.Tensor, feat_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feat [b, c, h, w], feat_mask [b, h, w] -> memory [b, h*w, d], padding [b, h*w] (True = pad)."""
        x = self.feat_proj(feat).permute(0, 2, 3, 1)  # [b, h, w, d]
        x = self.feat_norm(x) + image_position_encoding(feat_mask, self.d_model).to(x.dtype)
        return x.flatten(1, 2), ~feat_mask.flatten(1)

    def decode(self, memory: torch.Tensor, memory_pad: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
        """tokens_in [b, t] (starting with the start token) -> logits [b, t, vocab]."""
        t = tokens_in.shape[1]
        pos = sinusoid(torch.arange(t, device=tokens_in.device), self.d_model).to(memory.dtype)  # [t, d]
        x = self.embed_norm(self.embed(tokens_in) * math.sqrt(self.d_model) + pos)  # [b, t, d]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)  # True = masked
        x = self.layers(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=tokens_in == self.pad_id,
            memory_key_padding_mask=memory_pad,
        )
        return self.out(x)  # [b, t, vocab]

    def forward(self, feat: torch.Tensor, feat_mask: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
        memory, memory_pad = self.memory(feat, feat_mask)
        return self.decode(memory, memory_pad, tokens_in)

    # ---- step-wise decoding ----------------------------------------------------------
    def init_state(self, feat: torch.Tensor, feat_mask: torch.Tensor) -> tuple[dict, dict]:
        memory, memory_pad = self.memory(feat, feat_mask)
        tokens = torch.zeros(feat.shape[0], 0, dtype=torch.long, device=feat.device)  # [b, 0]
        return {"memory": memory, "memory_pad": memory_pad}, {"tokens": tokens}

    def step(self, context: dict, state: dict, prev: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Appends ``prev`` [n] and returns the next-token logits [n, vocab]. Recomputes the
        prefix each step (no key/value cache): simple and exact; formulas are short."""
        tokens = torch.cat([state["tokens"], prev.unsqueeze(1)], dim=1)  # [n, t]
        logits = self.decode(context["memory"], context["memory_pad"], tokens)[:, -1]
        return logits, {"tokens": tokens}
