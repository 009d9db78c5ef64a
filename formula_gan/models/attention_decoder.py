"""GRU decoder with Bahdanau attention over a 2-D feature map (optionally WAP coverage).

Token ids follow the data layer's vocabulary: PAD = 0, SOS = 1, EOS = 2, UNK = 3. The
model only receives ``vocab_size``. ``forward`` is teacher-forced; ``init_state`` and
``step`` serve greedy and beam decoding (``DecoderState.select`` reorders beams).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

PAD, SOS, EOS, UNK = 0, 1, 2, 3


def teacher_forcing(tokens: torch.Tensor, lengths: torch.Tensor, start: int = SOS, end: int = EOS
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch tokens (padded with PAD, no SOS/EOS) -> (decoder input ``start y``, target ``y end``), both [b, t+1].
    Reading right to left swaps the roles: ``start=EOS, end=SOS``."""
    b, t = tokens.shape
    tokens_in = torch.full((b, t + 1), PAD, dtype=torch.long, device=tokens.device)
    tokens_in[:, 0] = start
    tokens_in[:, 1:] = tokens
    target = torch.full((b, t + 1), PAD, dtype=torch.long, device=tokens.device)
    target[:, :t] = tokens
    target[torch.arange(b, device=tokens.device), lengths] = end
    return tokens_in, target


@dataclass
class DecoderState:
    hidden: torch.Tensor  # [b, hidden]
    feat: torch.Tensor  # [b, n, c]  flattened feature map
    feat_proj: torch.Tensor  # [b, n, attn]  U·feat, computed once per image
    mask: torch.Tensor  # [b, n] bool
    shape: tuple[int, int]  # (h', w') of the feature map
    coverage: torch.Tensor | None  # [b, n] sum of past attention weights (coverage=True)
    alpha: torch.Tensor | None  # [b, n] the last attention weights (for visualization)

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Rows ``index`` of every tensor (beam search expands and reorders hypotheses)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.index_select(0, index) if isinstance(v, torch.Tensor) else v
        return DecoderState(**out)


class AttentionGRUDecoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        feat_channels: int,
        embed_dim: int = 256,
        hidden: int = 256,
        attn_dim: int = 256,
        coverage: bool = False,
        coverage_kernel: int = 11,
        coverage_channels: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden = hidden
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.init_hidden = nn.Linear(feat_channels, hidden)
        self.feat_proj = nn.Linear(feat_channels, attn_dim)
        self.hidden_proj = nn.Linear(hidden, attn_dim, bias=False)
        self.score = nn.Linear(attn_dim, 1, bias=False)
        self.coverage = coverage
        if coverage:
            # WAP's coverage: a convolution over the accumulated attention map tells the
            # attention which regions were already read, against over- and under-parsing.
            self.cov_conv = nn.Conv2d(1, coverage_channels, coverage_kernel, padding=coverage_kernel // 2)
            self.cov_proj = nn.Linear(coverage_channels, attn_dim, bias=False)
        self.gru = nn.GRUCell(embed_dim + feat_channels, hidden)
        self.out = nn.Sequential(
            nn.Linear(hidden + feat_channels + embed_dim, embed_dim),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(embed_dim, vocab_size),
        )

    def init_state(self, feat: torch.Tensor, feat_mask: torch.Tensor) -> DecoderState:
        # feat: [b, c, h, w], feat_mask: [b, h, w]
        b, c, h, w = feat.shape
        flat = feat.flatten(2).transpose(1, 2)  # [b, n, c]
        mask = feat_mask.reshape(b, h * w)  # [b, n]
        m = mask.unsqueeze(-1).to(flat.dtype)
        mean = (flat * m).sum(1) / m.sum(1).clamp_min(1.0)  # [b, c]
        hidden = torch.tanh(self.init_hidden(mean))  # [b, hidden]
        coverage = flat.new_zeros(b, h * w) if self.coverage else None
        return DecoderState(hidden, flat, self.feat_proj(flat), mask, (h, w), coverage, None)

    def _attend(self, state: DecoderState) -> tuple[torch.Tensor, torch.Tensor]:
        energy = state.feat_proj + self.hidden_proj(state.hidden).unsqueeze(1)  # [b, n, attn]
        if state.coverage is not None:
            b = state.coverage.shape[0]
            cov = self.cov_conv(state.coverage.view(b, 1, *state.shape))  # [b, q, h, w]
            energy = energy + self.cov_proj(cov.flatten(2).transpose(1, 2))
        e = self.score(torch.tanh(energy)).squeeze(-1).float()  # [b, n]
        e = e.masked_fill(~state.mask, torch.finfo(e.dtype).min)
        alpha = torch.softmax(e, dim=-1).to(state.feat.dtype)  # [b, n]
        context = torch.bmm(alpha.unsqueeze(1), state.feat).squeeze(1)  # [b, c]
        return context, alpha

    def step(self, state: DecoderState, prev_token: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step: previous token [b] -> logits [b, vocab] and the next state."""
        emb = self.embed(prev_token)  # [b, e]
        context, alpha = self._attend(state)
        hidden = self.gru(torch.cat([emb, context], dim=-1).to(state.hidden.dtype), state.hidden)  # [b, hidden]
        logits = self.out(torch.cat([hidden, context, emb], dim=-1))  # [b, vocab]
        coverage = state.coverage + alpha if state.coverage is not None else None
        new = DecoderState(hidden, state.feat, state.feat_proj, state.mask, state.shape, coverage, alpha)
        return logits, new

    def forward(self, feat: torch.Tensor, feat_mask: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: feat [b, c, h, w], feat_mask [b, h, w], tokens_in [b, t] -> logits [b, t, vocab]."""
        state = self.init_state(feat, feat_mask)
        logits = []
        for t in range(tokens_in.shape[1]):
            step_logits, state = self.step(state, tokens_in[:, t])
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(self, feat: torch.Tensor, feat_mask: torch.Tensor, max_len: int) -> list[list[int]]:
        """Greedy decoding; the token ids of each sample without SOS/EOS."""
        state = self.init_state(feat, feat_mask)
        b = feat.shape[0]
        prev = torch.full((b,), SOS, dtype=torch.long, device=feat.device)
        out: list[list[int]] = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool, device=feat.device)
        for _ in range(max_len):
            logits, state = self.step(state, prev)
            prev = logits.argmax(-1)  # [b]
            for i in (~done).nonzero().flatten().tolist():
                if prev[i].item() != EOS:
                    out[i].append(int(prev[i]))
            done |= prev == EOS
            if bool(done.all()):
                break
        return out
