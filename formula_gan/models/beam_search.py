"""Greedy and batched beam-search decoding for any step-wise decoder.

A decoder is seen through one function::

    step_fn(context, state, prev_tokens [n]) -> (logits [n, vocab], new_state)

``context`` and ``state`` are dicts of tensors whose first dimension is the
batch (one row per hypothesis). ``context`` (encoder features and their mask)
is expanded once to ``batch * beam`` rows and never reordered: every beam of a
formula reads the same image. ``state`` (GRU hidden state, coverage, tokens so
far) is reordered every step by the surviving beams' parents. Everything stays
on the decoder's device; only the few finished hypotheses per step cross to the
CPU.

Beam search is the usual length-normalized one: a hypothesis's score is the sum
of its token log-probabilities (end token included) divided by
``length ** length_penalty``. Each step takes the top ``2 * beam`` extensions
per formula; end-token extensions among the top ``beam`` are finished, the best
``beam`` other extensions continue (there are always enough: each beam offers at
most one end token). A formula stops when it has ``beam`` finished hypotheses
and no live beam, scored at its current length, beats the worst of them (the
stopping rule of common implementations; with length normalization it is a
heuristic, not a bound). At ``max_len`` the live beams are finished as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensors = dict[str, torch.Tensor]
StepFn = Callable[[Tensors, Tensors, torch.Tensor], tuple[torch.Tensor, Tensors]]


@dataclass
class Hypothesis:
    tokens: list[int]  # without start and end tokens
    score: float  # length-normalized log-probability
    log_prob: float  # summed log-probability


def _index(tensors: Tensors, index: torch.Tensor) -> Tensors:
    return {k: v.index_select(0, index) for k, v in tensors.items()}


def _repeat(tensors: Tensors, times: int) -> Tensors:
    return {k: v.repeat_interleave(times, dim=0) for k, v in tensors.items()}


@torch.no_grad()
def greedy_decode(
    step_fn: StepFn, context: Tensors, state: Tensors, batch_size: int, sos: int, eos: int, max_len: int
) -> list[Hypothesis]:
    """Arg-max decoding of a batch; stops when every formula has produced the end token."""
    device = next(iter(context.values())).device
    prev = torch.full((batch_size,), sos, dtype=torch.long, device=device)
    out = torch.full((batch_size, max_len), eos, dtype=torch.long, device=device)  # [b, max_len]
    log_prob = torch.zeros(batch_size, device=device)
    alive = torch.ones(batch_size, dtype=torch.bool, device=device)
    lengths = torch.full((batch_size,), max_len, dtype=torch.long, device=device)
    for t in range(max_len):
        logits, state = step_fn(context, state, prev)
        logp = F.log_softmax(logits.float(), dim=-1)  # [b, vocab]
        best_logp, prev = logp.max(dim=-1)
        log_prob += best_logp * alive
        out[:, t] = prev
        ended = alive & (prev == eos)
        lengths[ended] = t + 1  # counting the end token
        alive &= ~ended
        if not alive.any():
            break
    result = []
    for i, row in enumerate(out.tolist()):
        tokens = row[: row.index(eos)] if eos in row else row
        n = int(lengths[i])
        lp = float(log_prob[i])
        result.append(Hypothesis(tokens, lp / n, lp))
    return result


@torch.no_grad()
def beam_search(
    step_fn: StepFn,
    context: Tensors,
    state: Tensors,
    batch_size: int,
    sos: int,
    eos: int,
    max_len: int,
    beam: int = 10,
    length_penalty: float = 1.0,
    expand_context: bool = True,
) -> list[Hypothesis]:
    """Best length-normalized hypothesis per formula, all formulas decoded together.

    ``expand_context=False``: ``context`` stays one row per formula and ``step_fn`` is given it
    with ``batch_size * beam`` state rows (each formula's ``beam`` rows consecutive), for a step
    that works out the beams from the shapes (the ONNX recognizer: no ``beam`` copies of the
    encoder's features to make and to read)."""
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    b, k = batch_size, beam
    device = next(iter(context.values())).device
    if expand_context:
        context = _repeat(context, k)  # [b * k, ...]
    state = _repeat(state, k)
    scores = torch.full((b, k), float("-inf"), device=device)  # [b, k] summed log-probs of live beams
    scores[:, 0] = 0.0  # all beams start identical: keep one so the first step does not pick duplicates
    history = torch.zeros((b * k, 0), dtype=torch.long, device=device)  # [b * k, t]
    prev = torch.full((b * k,), sos, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    done = [False] * b
    offsets = (torch.arange(b, device=device) * k).unsqueeze(1)  # [b, 1]
    rank = torch.arange(2 * k, device=device).unsqueeze(0)  # [1, 2k]

    for t in range(max_len):
        logits, state = step_fn(context, state, prev)
        logp = F.log_softmax(logits.float(), dim=-1)  # [b * k, vocab]
        vocab = logp.shape[-1]
        cand = (scores.unsqueeze(-1) + logp.view(b, k, vocab)).view(b, k * vocab)  # [b, k * vocab]
        top_scores, top_index = cand.topk(2 * k, dim=1)  # [b, 2k]
        parent = top_index // vocab  # [b, 2k] beam within the formula
        token = top_index % vocab
        is_eos = token == eos
        length = t + 1  # tokens scored so far, including this one

        # end-token extensions ranked within the top k finish
        new_finished = is_eos & (rank < k) & torch.isfinite(top_scores)
        if new_finished.any():
            idx = new_finished.nonzero().tolist()
            rows = (offsets + parent)[new_finished]
            ends = history.index_select(0, rows).tolist()
            for (bi, j), tokens in zip(idx, ends):
                if done[bi]:
                    continue
                lp = float(top_scores[bi, j])
                finished[bi].append(Hypothesis(tokens, lp / length**length_penalty, lp))

        # the best k other extensions continue
        cont_scores = top_scores.masked_fill(is_eos, float("-inf"))
        scores, pick = cont_scores.topk(k, dim=1)  # [b, k]
        rows = (offsets + parent.gather(1, pick)).view(-1)  # [b * k] parent rows
        prev = token.gather(1, pick).view(-1)
        history = torch.cat([history.index_select(0, rows), prev.unsqueeze(1)], dim=1)
        state = _index(state, rows)

        best_live = (scores.max(dim=1).values / length**length_penalty).tolist()
        for bi in range(b):
            if done[bi] or len(finished[bi]) < k:
                continue
            worst_kept = sorted((h.score for h in finished[bi]), reverse=True)[k - 1]
            if best_live[bi] <= worst_kept:
                done[bi] = True
        if all(done):
            break
        # a finished formula's beams keep running (batch shapes stay fixed) but add nothing

    if not all(done):  # max_len reached: the live beams finish where they are
        live = history.view(b, k, -1).tolist()
        final_scores = scores.tolist()
        for bi in range(b):
            if done[bi]:
                continue
            for j in range(k):
                lp = final_scores[bi][j]
                if lp != float("-inf"):
                    finished[bi].append(Hypothesis(live[bi][j], lp / max_len**length_penalty, lp))
    return [max(hyps, key=lambda h: h.score) if hyps else Hypothesis([], float("-inf"), float("-inf")) for hyps in finished]
