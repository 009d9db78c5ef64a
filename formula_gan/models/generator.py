"""The image-to-image generator: residual encoder, noise, conditional-BN residual decoder.

Architecture (d = width multiplier, channels rounded to multiples of 8):

    encoder  DownBlock  1    -> 64d    /2
             DownBlock  64d  -> 128d   /4
             DownBlock  128d -> 256d   /8
             DownBlock  256d -> 512d   /16      + 1×1 projection of z chunk 0
    decoder  GBlock     512d -> 512d   /8       CBN([class emb, z chunk 1])
             GBlock     512d -> 256d   /4       CBN([class emb, z chunk 2])
             (self-attention, when on, after ``attention_after`` decoder blocks; default 2)
             GBlock     256d -> 128d   /2       CBN([class emb, z chunk 3])
             GBlock     128d -> 64d    /1       CBN([class emb, z chunk 4])
    output   BN, ReLU, conv3×3 -> 1, sigmoid   (ink in [0, 1])

That is the paper's generator (the defaults). Three options make it learn on small
images and small budgets, where the paper's version lets content vanish in a 1/16
bottleneck that z dominates (at 64 px high it is 4 rows):

* ``skip``: U-Net skips, each encoder output (/8, /4, /2) added through a 1×1 conv
  to the decoder output of the same size, so content reaches every scale;
* ``residual``: the output is the input plus a learned change (the last conv starts
  at zero, so an untrained G is the identity and training starts from the rendering);
* ``output="clamp"``: ink clamped to [0, 1] instead of a sigmoid, so the background
  can be exactly 0 like real images' (a sigmoid leaves a faint veil D can see).

Any height and width that are multiples of 16 work; the output has the input's size.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.models.layers import ConditionalBatchNorm2d, DownBlock, GBlock, SelfAttention, channels, embedding, layer_factories

ENCODER = (1, 2, 4, 8)  # ×64d, the encoder's output channels per block
DECODER = ((8, 8), (8, 4), (4, 2), (2, 1))  # ×64d, (in, out) per decoder block
STRIDE = 16  # four ×2 down-samplings
OUTPUT_BIAS = -3.0  # sigmoid(-3) ≈ 0.047


class Generator(nn.Module):
    def __init__(
        self,
        width: float = 1.0,
        z_dim: int = 120,
        class_dim: int = 128,
        n_domains: int = 2,
        attention: bool = True,
        attention_after: int = 2,
        spectral_norm: bool = True,
        skip: bool = False,
        residual: bool = False,
        output: Literal["sigmoid", "clamp"] = "sigmoid",
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "clamp"):
            raise ValueError(f"output must be sigmoid or clamp, got {output!r}")
        n_chunks = 1 + len(DECODER)
        if z_dim % n_chunks:
            raise ValueError(f"z_dim must split into {n_chunks} equal chunks (encoder + {len(DECODER)} decoder blocks), got {z_dim}")
        if attention and not 0 < attention_after < len(DECODER):
            raise ValueError(f"attention_after must be between 1 and {len(DECODER) - 1}, got {attention_after}")
        self.config: dict[str, Any] = dict(
            width=width, z_dim=z_dim, class_dim=class_dim, n_domains=n_domains,
            attention=attention, attention_after=attention_after, spectral_norm=spectral_norm,
            skip=skip, residual=residual, output=output,
        )
        self.residual, self.output = residual, output
        self.z_dim = z_dim
        self.n_domains = n_domains
        self.chunk = z_dim // n_chunks
        which_conv, which_linear = layer_factories(spectral_norm)
        which_bn = functools.partial(ConditionalBatchNorm2d, cond_dim=class_dim + self.chunk, which_linear=which_linear)

        enc = channels(64, ENCODER, width)
        self.encoder = nn.ModuleList(
            DownBlock(cin, cout, which_conv, preactivation=i > 0) for i, (cin, cout) in enumerate(zip([1] + enc[:-1], enc))
        )
        # a 1×1 conv on a [b, chunk, 1, 1] map is a linear layer broadcast over positions
        self.z_proj = which_linear(self.chunk, enc[-1])
        self.shared = embedding(n_domains, class_dim, sn=False)  # one class embedding shared by all CBNs

        dec_in = channels(64, tuple(i for i, _ in DECODER), width)
        dec_out = channels(64, tuple(o for _, o in DECODER), width)
        self.decoder = nn.ModuleList(GBlock(i, o, which_conv, which_bn) for i, o in zip(dec_in, dec_out))
        self.attention_after = attention_after if attention else 0
        self.attention = SelfAttention(dec_out[attention_after - 1], which_conv) if attention else None
        # skips: encoder outputs at /8, /4, /2 into the decoder outputs of the same size
        self.skips = (
            nn.ModuleList(which_conv(e, d, kernel_size=1, padding=0) for e, d in zip(enc[-2::-1], dec_out[:-1]))
            if skip else None
        )  # fmt: skip
        self.out_bn = nn.BatchNorm2d(dec_out[-1], eps=1e-4)
        if residual:
            # The change starts at zero: an untrained generator returns its input. (A plain conv:
            # spectral norm cannot normalize a zero weight.)
            self.out_conv = nn.Conv2d(dec_out[-1], 1, 3, padding=1)
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)
        else:
            self.out_conv = which_conv(dec_out[-1], 1)
        if output == "sigmoid" and not residual:
            # Formula images are mostly paper: start the sigmoid near "no ink" (≈ 5 %) instead of
            # at 0.5 everywhere, so early training is not spent erasing a gray canvas.
            nn.init.constant_(self.out_conv.bias, OUTPUT_BIAS)

    def forward(self, x: torch.Tensor, domain: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x [b, 1, h, w] ink = 1, domain [b] long (target domain), z [b, z_dim] -> [b, 1, h, w] in [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images [b, 1, h, w], got {tuple(x.shape)}")
        if x.shape[-2] % STRIDE or x.shape[-1] % STRIDE:
            raise ValueError(f"height and width must be multiples of {STRIDE}, got {tuple(x.shape[-2:])}")
        if z.shape != (x.shape[0], self.z_dim):
            raise ValueError(f"expected z of shape {(x.shape[0], self.z_dim)}, got {tuple(z.shape)}")
        zs = torch.split(z, self.chunk, dim=1)  # 1 + len(decoder) chunks of [b, chunk]
        h = x
        features = []
        for block in self.encoder:
            h = block(h)  # [b, c, h/2^k, w/2^k]
            features.append(h)
        h = h + self.z_proj(zs[0]).unsqueeze(-1).unsqueeze(-1)  # [b, 512d, h/16, w/16]
        cls = self.shared(domain)  # [b, class_dim]
        for i, block in enumerate(self.decoder):
            h = block(h, torch.cat([cls, zs[i + 1]], dim=1))
            if self.skips is not None and i < len(self.skips):
                h = h + self.skips[i](features[-2 - i])  # the encoder output of this size
            if i + 1 == self.attention_after:
                h = self.attention(h)
        h = self.out_conv(F.relu(self.out_bn(h))).float()  # [b, 1, h, w]
        if self.residual:
            h = h + x.float()
        return h.clamp(0.0, 1.0) if self.output == "clamp" else torch.sigmoid(h)
