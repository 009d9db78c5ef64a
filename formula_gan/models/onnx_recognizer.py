"""The DenseWAP recognizer (DenseNet encoder, GRU + attention decoder) as two ONNX graphs, and
greedy and beam decoding around them with ``beam_search``'s own functions.

    encoder  images [b, 1, H, W], masks [b, H, W]
             -> feat_proj [b, n, attn], ctx_proj [b, n, 3·hidden + embed], mask [b, n],
                hidden [b, hidden], (coverage [b, h', w'] of zeros)
    step     prev [r], hidden [r, hidden], (coverage [r, h', w']), feat_proj, ctx_proj, mask
             -> logits [r, vocab], hidden_out, (coverage_out)

``r = b · k`` rows of state (k hypotheses per formula, consecutive) against ``b`` rows of
context: the encoder's features are never copied k times (``beam_search(expand_context=False)``).

The step computes ``AttentionGRUDecoder.step`` in another order, profiled first (the packaged
recognizer, beam 10, CROHME test 2014 at 64 px: the GRU's input Gemm over [embedding, context]
and the output layer's took ~35 % of the step). Both are linear in the attention context
``Σ α_j feat_j``, so their context parts are applied to the features once per image in the
encoder (``ctx_proj = feat · W_ctxᵀ``) and each step mixes those rows with α instead of mixing
``feat`` and multiplying (n·(3h+e) instead of n·c + c·(3h+e) per hypothesis); their embedding
parts (and biases) become a lookup table ``[vocab, 3h+e]``. The same function, in float32;
the sums are reassociated, so logits differ from torch's by ~1e-6, and the parity test and
``scripts/bench_recognize.py`` check that the readings are identical.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from formula_gan.models.attention_decoder import EOS, SOS, AttentionGRUDecoder
from formula_gan.models.beam_search import Hypothesis, beam_search, greedy_decode
from formula_gan.models.onnx_engine import run, session
from formula_gan.models.onnx_files import OnnxFile, export_graph
from formula_gan.models.recognizer import RecognizerModel

ENCODER_INPUTS = ("images", "masks")
CONTEXT = ("feat_proj", "ctx_proj", "mask")


def _gru_decoder(model: RecognizerModel) -> AttentionGRUDecoder:
    if not isinstance(model.decoder, AttentionGRUDecoder):
        from formula_gan.errors import FormulaGanError

        raise FormulaGanError("only recognizers with the GRU decoder (decoder: gru) can be exported to ONNX; "
                              "this one has a transformer decoder: use --engine torch")
    return model.decoder


def _ctx_weight(dec: AttentionGRUDecoder) -> torch.Tensor:
    """[3h + e, c]: the GRU's input weights and the output layer's weights on the context."""
    e = dec.embed.embedding_dim
    out1: nn.Linear = dec.out[0]  # type: ignore[assignment]
    c = dec.gru.weight_ih.shape[1] - e  # the GRU reads cat([embedding, context])
    h = dec.hidden
    return torch.cat([dec.gru.weight_ih[:, e:], out1.weight[:, h : h + c]], dim=0)


class EncoderGraph(nn.Module):
    def __init__(self, model: RecognizerModel) -> None:
        super().__init__()
        self.encoder, self.dec = model.encoder, _gru_decoder(model)
        self.register_buffer("ctx_weight", _ctx_weight(self.dec).detach().clone())

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat, feat_mask = self.encoder(images, masks)  # [b, c, h', w'], [b, h', w']
        s = self.dec.init_state(feat, feat_mask)
        ctx_proj = torch.matmul(s.feat, self.ctx_weight.t())  # [b, n, 3h + e]
        out = (s.feat_proj, ctx_proj, s.mask, s.hidden)
        if self.dec.coverage:
            out += (torch.zeros_like(feat_mask, dtype=feat.dtype),)  # [b, h', w']
        return out


class StepGraph(nn.Module):
    def __init__(self, dec: AttentionGRUDecoder) -> None:
        super().__init__()
        e, h = dec.embed.embedding_dim, dec.hidden
        out1: nn.Linear = dec.out[0]  # type: ignore[assignment]
        c = dec.gru.weight_ih.shape[1] - e
        with torch.no_grad():
            emb = dec.embed.weight  # [vocab, e]
            gru_table = emb @ dec.gru.weight_ih[:, :e].t() + dec.gru.bias_ih  # [vocab, 3h]
            out_table = emb @ out1.weight[:, h + c :].t() + out1.bias  # [vocab, e]
        self.register_buffer("table", torch.cat([gru_table, out_table], dim=1).detach().clone())
        self.register_buffer("w_hh", dec.gru.weight_hh.detach().clone())
        self.register_buffer("b_hh", dec.gru.bias_hh.detach().clone())
        self.register_buffer("w_out_hidden", out1.weight[:, :h].detach().clone())
        self.hidden, self.dec = h, dec
        self.final: nn.Linear = dec.out[3]  # type: ignore[assignment]

    def forward(self, prev: torch.Tensor, hidden: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dec, h = self.dec, self.hidden
        coverage, (feat_proj, ctx_proj, mask) = (rest[0], rest[1:]) if dec.coverage else (None, rest)
        b, n, a = feat_proj.shape
        energy = feat_proj.unsqueeze(1) + dec.hidden_proj(hidden).view(b, -1, 1, a)  # [b, k, n, attn]
        if coverage is not None:
            cov = dec.cov_conv(coverage.unsqueeze(1))  # [r, q, h', w']
            energy = energy + dec.cov_proj(cov.flatten(2).transpose(1, 2)).view(b, -1, n, a)
        e = dec.score(torch.tanh(energy)).squeeze(-1)  # [b, k, n]
        e = e.masked_fill(~mask.unsqueeze(1), torch.finfo(e.dtype).min)
        alpha = torch.softmax(e, dim=-1)  # [b, k, n]
        mixed = torch.matmul(alpha, ctx_proj).flatten(0, 1) + self.table[prev]  # [r, 3h + e]
        gi, out_part = mixed[:, : 3 * h], mixed[:, 3 * h :]
        gh = F.linear(hidden, self.w_hh, self.b_hh)  # [r, 3h]
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)  # GRUCell's gates, in its order
        new_hidden = (1 - z) * torch.tanh(i_n + r * h_n) + z * hidden
        logits = self.final(torch.tanh(F.linear(new_hidden, self.w_out_hidden) + out_part))  # [r, vocab]
        if coverage is None:
            return logits, new_hidden
        return logits, new_hidden, coverage + alpha.reshape(coverage.shape)


def state_names(model: RecognizerModel) -> list[str]:
    return ["hidden", "coverage"] if _gru_decoder(model).coverage else ["hidden"]


def recognizer_graphs(model: RecognizerModel) -> tuple[bytes, bytes]:
    """(encoder, step) ONNX bytes of a GRU recognizer, unstamped; batch, height, width and the
    feature map's size dynamic."""
    model = model.cpu().float().eval()
    names = state_names(model)
    enc = EncoderGraph(model).eval()
    b, height, width = 2, 64, 8 * int(model.encoder.stride)
    images, masks = torch.zeros(b, 1, height, width), torch.ones(b, height, width, dtype=torch.bool)
    enc_out = [*CONTEXT[:2], "mask", "hidden", *names[1:]]
    axes: dict[str, dict[int, str]] = {"images": {0: "b", 2: "height", 3: "width"}, "masks": {0: "b", 1: "height", 2: "width"},
                                       "feat_proj": {0: "b", 1: "n"}, "ctx_proj": {0: "b", 1: "n"}, "mask": {0: "b", 1: "n"},
                                       "hidden": {0: "b"}, "coverage": {0: "b", 1: "fh", 2: "fw"}}
    with torch.no_grad():
        encoder_bytes = export_graph(enc, (images, masks), ENCODER_INPUTS, enc_out, axes)
        feat_proj, ctx_proj, mask, hidden, *cov = enc(images, masks)
        k = 3  # hypotheses per formula in the example: the graph works out k from the shapes
        rows = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        state = [rows(hidden), *[rows(c) for c in cov]]
        prev = torch.full((b * k,), SOS, dtype=torch.long)
        inputs = ["prev", *names, *CONTEXT]
        outputs = ["logits", *[f"{s}_out" for s in names]]
        step_axes = {"prev": {0: "r"}, "hidden": {0: "r"}, "coverage": {0: "r", 1: "fh", 2: "fw"},
                     "feat_proj": {0: "b", 1: "n"}, "ctx_proj": {0: "b", 1: "n"}, "mask": {0: "b", 1: "n"},
                     "logits": {0: "r"}, "hidden_out": {0: "r"}, "coverage_out": {0: "r", 1: "fh", 2: "fw"}}
        step_bytes = export_graph(StepGraph(model.decoder).eval(), (prev, *state, feat_proj, ctx_proj, mask),
                                  inputs, outputs, {k_: v for k_, v in step_axes.items() if k_ in inputs + outputs})
    return encoder_bytes, step_bytes


class OnnxRecognizerModel:
    """The two graphs in ONNX Runtime sessions, decoding as ``RecognizerModel.decode`` does."""

    def __init__(self, encoder: OnnxFile, step: OnnxFile, threads: int) -> None:
        meta = encoder.meta
        self.state = list(meta["state"])
        self.max_len = int(meta["max_len"])
        self.encoder = SimpleNamespace(stride=int(meta["stride"]))  # what readers ask of a model's encoder
        self.encoder_session = session(encoder, threads)
        self.step_session = session(step, threads)

    @torch.no_grad()
    def decode(self, images: torch.Tensor, masks: torch.Tensor, beam: int = 10, max_len: int | None = None,
               length_penalty: float = 1.0) -> list[Hypothesis]:
        """Token ids per image (no SOS/EOS): greedy when ``beam`` is 1, else beam search."""
        out = run(self.encoder_session, {"images": images.float().contiguous(), "masks": masks.contiguous()})
        context = dict(zip(CONTEXT[:2], out[:2]))
        context["mask"] = out[2]
        state = dict(zip(self.state, out[3:]))
        n, max_len = images.shape[0], max_len or self.max_len
        if beam == 1:
            return greedy_decode(self._step, context, state, n, SOS, EOS, max_len)
        return beam_search(self._step, context, state, n, SOS, EOS, max_len, beam=beam, length_penalty=length_penalty,
                           expand_context=False)

    def _step(self, context: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
              prev: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feeds: dict[str, Any] = {"prev": prev, **{k: v.contiguous() for k, v in state.items()}, **context}
        logits, *new = run(self.step_session, feeds)
        return logits, dict(zip(self.state, new))
