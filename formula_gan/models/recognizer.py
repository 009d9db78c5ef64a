"""The downstream recognizer: DenseNet encoder + attention decoder (DenseWAP) or Transformer (BTTR).

============  ==========================================================  =====================
part          DenseWAP (``decoder: gru``, the default)                     BTTR (``transformer``)
============  ==========================================================  =====================
encoder       DenseNet-B: 3 blocks × 16 bottleneck layers, growth 24,      same
              48 stem channels, compression 0.5, stride 16
decoder       GRU 256, Bahdanau attention 256 with WAP coverage            3 layers, d 256, 8 heads,
                                                                           2-D sin/cos positions
training      left-to-right cross-entropy                                  L2R + R2L (same decoder)
decoding      greedy or beam (length-normalized), max 200 tokens           same, L2R only
============  ==========================================================  =====================

The paper's small task model (Table 1's perplexity protocol) is the same class
with ``block_layers (6, 6, 6)``, no bottleneck and no coverage.

Token ids follow the data layer's vocabulary (PAD 0, SOS 1, EOS 2); the model
only receives ``vocab_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.models.attention_decoder import EOS, PAD, SOS, UNK, AttentionGRUDecoder, DecoderState, teacher_forcing
from formula_gan.models.beam_search import Hypothesis, beam_search, greedy_decode
from formula_gan.models.densenet import DenseNetEncoder
from formula_gan.models.transformer_decoder import TransformerDecoder


@dataclass
class RecognizerModelConfig:
    decoder: Literal["gru", "transformer"] = "gru"
    # encoder: DenseWAP's DenseNet-B (Zhang et al. 2018: depth 16 per block, growth 24)
    growth: int = 24
    block_layers: tuple[int, ...] = (16, 16, 16)
    init_channels: int = 48
    bottleneck: bool = True
    compression: float = 0.5
    encoder_dropout: float = 0.2  # DenseWAP's dropout inside dense layers; CROHME is small
    # GRU decoder (WAP)
    embed_dim: int = 256
    hidden: int = 256
    attn_dim: int = 256
    coverage: bool = True  # WAP's coverage vector against reading a symbol twice or never
    decoder_dropout: float = 0.2
    # Transformer decoder (BTTR)
    d_model: int = 256
    nhead: int = 8
    num_layers: int = 3
    dim_feedforward: int = 1024
    transformer_dropout: float = 0.3
    bidirectional: bool = True  # BTTR: also learn to read right to left (used by the transformer only)
    # both
    max_len: int = 200  # longest formula decoded; CROHME's longest is ~100 tokens
    label_smoothing: float = 0.0
    # Teacher forcing with holes: each previous token the decoder is given in training is replaced
    # by UNK with this probability, so that it must read the image rather than recite a formula
    # it memorized (CROHME repeats formulas across writers; test sets do not).
    input_dropout: float = 0.0


def reverse_targets(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R2L teacher forcing (BTTR): input ``EOS y_n .. y_1``, target ``y_n .. y_1 SOS``, both [b, t+1]."""
    t = tokens.shape[1]
    pos = torch.arange(t, device=tokens.device).unsqueeze(0)  # [1, t]
    src = (lengths.unsqueeze(1) - 1 - pos).clamp_min(0)  # [b, t] index of the token read at pos
    rev = tokens.gather(1, src).masked_fill(pos >= lengths.unsqueeze(1), PAD)  # [b, t]
    return teacher_forcing(rev, lengths, start=EOS, end=SOS)


class RecognizerModel(nn.Module):
    def __init__(self, vocab_size: int, cfg: RecognizerModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or RecognizerModelConfig()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.encoder = DenseNetEncoder(
            in_channels=1,
            growth=cfg.growth,
            block_layers=tuple(cfg.block_layers),
            init_channels=cfg.init_channels,
            bottleneck=cfg.bottleneck,
            compression=cfg.compression,
            dropout=cfg.encoder_dropout,
        )
        c = self.encoder.out_channels
        self.decoder: nn.Module
        if cfg.decoder == "gru":
            self.decoder = AttentionGRUDecoder(
                vocab_size, c, cfg.embed_dim, cfg.hidden, cfg.attn_dim, coverage=cfg.coverage, dropout=cfg.decoder_dropout
            )
        else:
            self.decoder = TransformerDecoder(
                vocab_size, c, cfg.d_model, cfg.nhead, cfg.num_layers, cfg.dim_feedforward, cfg.transformer_dropout, PAD
            )

    def forward(
        self, images: torch.Tensor, masks: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced loss. images [b, 1, h, w], masks [b, h, w], tokens [b, t] (PAD-padded, no SOS/EOS).

        Returns ``loss`` (mean cross-entropy over every target token, both directions when
        bidirectional), and ``nll`` / ``count``: the summed L2R negative log-likelihood
        (without smoothing) and its number of tokens, for perplexity."""
        feat, feat_mask = self.encoder(images, masks)  # [b, c, h', w'], [b, h', w']
        tokens_in, target = teacher_forcing(tokens, lengths)  # [b, t+1] each
        tokens_in = self._drop_inputs(tokens_in)
        b = tokens.shape[0]
        if self.cfg.decoder == "transformer" and self.cfg.bidirectional:
            r_in, r_target = reverse_targets(tokens, lengths)
            memory, memory_pad = self.decoder.memory(feat, feat_mask)
            logits = self.decoder.decode(
                memory.repeat(2, 1, 1), memory_pad.repeat(2, 1), torch.cat([tokens_in, r_in])
            )  # [2b, t+1, vocab]
            all_target = torch.cat([target, r_target])
        else:
            logits = self.decoder(feat, feat_mask, tokens_in)  # [b, t+1, vocab]
            all_target = target
        logits = logits.float()  # the loss in float32 under bf16 autocast
        loss = F.cross_entropy(
            logits.flatten(0, 1), all_target.flatten(), ignore_index=PAD, label_smoothing=self.cfg.label_smoothing
        )
        with torch.no_grad():
            l2r = logits[:b]
            nll = F.cross_entropy(l2r.flatten(0, 1), target.flatten(), ignore_index=PAD, reduction="sum")
            count = (target != PAD).sum()
        return {"loss": loss, "nll": nll, "count": count}

    def _drop_inputs(self, tokens_in: torch.Tensor) -> torch.Tensor:
        """Training only: replace decoder inputs by UNK with probability ``input_dropout`` (never the start token)."""
        p = self.cfg.input_dropout
        if not self.training or p <= 0:
            return tokens_in
        drop = torch.rand(tokens_in.shape, device=tokens_in.device) < p  # [b, t+1]
        drop[:, 0] = False
        return tokens_in.masked_fill(drop & (tokens_in != PAD), UNK)

    # ---- decoding --------------------------------------------------------------------
    def _decoding_fns(self, feat: torch.Tensor, feat_mask: torch.Tensor):
        """(context, state, step_fn) in the beam search's terms for either decoder."""
        if isinstance(self.decoder, TransformerDecoder):
            context, state = self.decoder.init_state(feat, feat_mask)
            return context, state, self.decoder.step
        dec: AttentionGRUDecoder = self.decoder
        s = dec.init_state(feat, feat_mask)
        context = {"feat": s.feat, "feat_proj": s.feat_proj, "mask": s.mask}
        state = {"hidden": s.hidden}
        if s.coverage is not None:
            state["coverage"] = s.coverage

        def step(ctx: dict, st: dict, prev: torch.Tensor) -> tuple[torch.Tensor, dict]:
            full = DecoderState(st["hidden"], ctx["feat"], ctx["feat_proj"], ctx["mask"], s.shape, st.get("coverage"), None)
            logits, new = dec.step(full, prev)
            out = {"hidden": new.hidden}
            if new.coverage is not None:
                out["coverage"] = new.coverage
            return logits, out

        return context, state, step

    @torch.no_grad()
    def decode(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        beam: int = 10,
        max_len: int | None = None,
        length_penalty: float = 1.0,
    ) -> list[Hypothesis]:
        """Token ids per image (no SOS/EOS): greedy when ``beam`` is 1, else beam search."""
        feat, feat_mask = self.encoder(images, masks)
        context, state, step = self._decoding_fns(feat, feat_mask)
        n = images.shape[0]
        max_len = max_len or self.cfg.max_len
        if beam == 1:
            return greedy_decode(step, context, state, n, SOS, EOS, max_len)
        return beam_search(step, context, state, n, SOS, EOS, max_len, beam=beam, length_penalty=length_penalty)
