"""Beam search: beam 1 is greedy, it escapes a greedy trap, batching changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from formula_gan.models.beam_search import beam_search, greedy_decode

PAD, SOS, EOS, A, B, C = range(6)
V = 6


def table_decoder(rows: dict[int, dict[int, float]]):
    """A decoder whose next-token distribution depends only on the previous token."""
    table = torch.full((V, V), 1e-6)
    for prev, probs in rows.items():
        for tok, p in probs.items():
            table[prev, tok] = p
    log_table = (table / table.sum(1, keepdim=True)).log()

    def step(context, state, prev):
        return log_table[prev], {"t": state["t"] + 1}

    return step


# Greedy is trapped: A (0.55) beats B (0.45) first, but after A the best it can do is
# end (0.3); after B comes C (0.95) and then the end (0.95).
TRAP = table_decoder({SOS: {A: 0.55, B: 0.45}, A: {EOS: 0.3, A: 0.25, B: 0.25, C: 0.2}, B: {C: 0.95, A: 0.05}, C: {EOS: 0.95, A: 0.05}})


def _ctx(n: int) -> tuple[dict, dict]:
    return {"x": torch.zeros(n, 1)}, {"t": torch.zeros(n)}


def test_beam_escapes_the_greedy_trap():
    ctx, st = _ctx(1)
    g = greedy_decode(TRAP, ctx, st, 1, SOS, EOS, max_len=10)[0]
    bm = beam_search(TRAP, ctx, st, 1, SOS, EOS, max_len=10, beam=3)[0]
    assert g.tokens == [A]
    # greedy: (ln .55 + ln .3) / 2 = (-0.598 - 1.204) / 2 = -0.901
    assert g.score == pytest.approx((math.log(0.55) + math.log(0.3)) / 2, abs=1e-4)
    assert bm.tokens == [B, C]
    # beam: (ln .45 + ln .95 + ln .95) / 3 = (-0.799 - 0.051 - 0.051) / 3 = -0.300
    assert bm.score == pytest.approx((math.log(0.45) + 2 * math.log(0.95)) / 3, abs=1e-4)
    assert bm.score > g.score


class TinyRNN(torch.nn.Module):
    """A random recurrent decoder whose output depends on its state and on the context."""

    def __init__(self, vocab: int = 7, dim: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.cell = torch.nn.GRUCell(dim, dim)
        self.out = torch.nn.Linear(2 * dim, vocab)
        with torch.no_grad():
            self.out.weight.mul_(4)  # peaky distributions: clear winners, few near-ties

    def step(self, context, state, prev):
        h = self.cell(self.embed(prev), state["h"])  # [n, d]
        return self.out(torch.cat([h, context["img"]], -1)), {"h": h}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
    dec = TinyRNN(seed=seed)
    ctx = {"img": torch.randn(5, 8)}
    st = {"h": torch.zeros(5, 8)}
    g = greedy_decode(dec.step, ctx, st, 5, SOS, EOS, max_len=12)
    bm = beam_search(dec.step, ctx, st, 5, SOS, EOS, max_len=12, beam=1)
    assert [h.tokens for h in g] == [h.tokens for h in bm]
    assert [h.score for h in g] == pytest.approx([h.score for h in bm], abs=1e-5)


@pytest.mark.parametrize("beam", [3, 10])
def test_batched_equals_one_by_one(beam):
    dec = TinyRNN(seed=3)
    n = 6
    ctx = {"img": torch.randn(n, 8)}
    st = {"h": torch.randn(n, 8)}
    batched = beam_search(dec.step, ctx, st, n, SOS, EOS, max_len=15, beam=beam)
    single = [
        beam_search(dec.step, {"img": ctx["img"][i : i + 1]}, {"h": st["h"][i : i + 1]}, 1, SOS, EOS, max_len=15, beam=beam)[0]
        for i in range(n)
    ]
    assert [h.tokens for h in batched] == [h.tokens for h in single]
    assert [h.score for h in batched] == pytest.approx([h.score for h in single], abs=1e-5)
    # and the beam never does worse than greedy on its own objective
    greedy = greedy_decode(dec.step, ctx, st, n, SOS, EOS, max_len=15)
    assert all(bm.score >= g.score - 1e-6 for bm, g in zip(batched, greedy))


def test_max_len_without_end_token():
    loop = table_decoder({SOS: {A: 1.0}, A: {A: 1.0}})
    ctx, st = _ctx(2)
    assert [h.tokens for h in greedy_decode(loop, ctx, st, 2, SOS, EOS, max_len=4)] == [[A] * 4] * 2
    assert [h.tokens for h in beam_search(loop, ctx, st, 2, SOS, EOS, max_len=4, beam=2)] == [[A] * 4] * 2


def test_bad_beam_is_an_error():
    ctx, st = _ctx(1)
    with pytest.raises(ValueError, match="beam"):
        beam_search(TRAP, ctx, st, 1, SOS, EOS, max_len=3, beam=0)
