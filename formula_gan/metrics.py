"""Recognition metrics as the handwritten-math and im2latex literature computes them.

Every function takes token sequences (``list[str]`` per formula, the normalized
tokens of the sample schema) and returns plain floats, so the same code scores a
recognizer, a baseline or a file of predictions. All rates are fractions in
[0, 1] (multiply by 100 for the percentages papers print), BLEU included.

Definitions (each has a hand-computed test in ``tests/test_metrics.py``):

* ``exprate``: fraction of formulas whose token sequence equals the reference
  exactly (CROHME's expression recognition rate). ``le1`` / ``le2``: fraction
  with at most 1 / 2 token edits (insertions, deletions, substitutions).
* ``wer``: total token edit distance / total reference tokens, pooled over the
  corpus as WAP computes it (not a mean of per-formula rates). Can exceed 1.
* ``cer``: the same at character level on the **space-free** string
  (``"".join(tokens)``), so that it does not depend on how a formula was split
  into tokens and spaces are not counted as characters.
* ``bleu``: corpus BLEU-4 on tokens (Papineni et al.): clipped n-gram
  precisions for n = 1..4 pooled over the corpus, geometric mean, brevity
  penalty; no smoothing (equals ``sacrebleu.corpus_bleu(..., tokenize="none",
  smooth_method="none")`` on space-joined tokens; implemented here on token
  tuples so that a token containing a space, such as ``"\\ "``, stays one token).
* ``edit_score``: im2markup's "edit distance" accuracy,
  1 − Σ edit distance / Σ max(len(ref), len(hyp)), token level, pooled.
* ``exact_match``: im2latex's text exact match: the space-free strings are
  equal (differs from ``exprate`` only when two tokenizations spell the same text).
* ``perplexity``: exp(Σ token cross-entropy / number of tokens), from the
  summed negative log-likelihood of the reference tokens (end token included)
  under teacher forcing; the paper's measure of a generator's usefulness.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from rapidfuzz.distance import Levenshtein

Tokens = Sequence[str]


def edit_distance(ref: Tokens, hyp: Tokens) -> int:
    """Levenshtein distance between two token sequences (unit costs)."""
    return int(Levenshtein.distance(list(ref), list(hyp)))


def char_edit_distance(ref: Tokens, hyp: Tokens) -> int:
    """Levenshtein distance between the space-free strings of two token sequences."""
    return int(Levenshtein.distance("".join(ref), "".join(hyp)))


def _check(refs: Sequence[Tokens], hyps: Sequence[Tokens]) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no formulas to score")


def exprate(refs: Sequence[Tokens], hyps: Sequence[Tokens], max_errors: int = 0) -> float:
    """Fraction of formulas recognized with at most ``max_errors`` token edits (0: exact)."""
    _check(refs, hyps)
    return sum(edit_distance(r, h) <= max_errors for r, h in zip(refs, hyps)) / len(refs)


def wer(refs: Sequence[Tokens], hyps: Sequence[Tokens]) -> float:
    """Σ token edit distance / Σ reference tokens."""
    _check(refs, hyps)
    total = sum(len(r) for r in refs)
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / max(total, 1)


def cer(refs: Sequence[Tokens], hyps: Sequence[Tokens]) -> float:
    """Σ character edit distance / Σ reference characters, on space-free strings."""
    _check(refs, hyps)
    total = sum(len("".join(r)) for r in refs)
    return sum(char_edit_distance(r, h) for r, h in zip(refs, hyps)) / max(total, 1)


def edit_score(refs: Sequence[Tokens], hyps: Sequence[Tokens]) -> float:
    """im2markup's edit-distance accuracy: 1 − Σ d / Σ max(len(ref), len(hyp))."""
    _check(refs, hyps)
    denom = sum(max(len(r), len(h)) for r, h in zip(refs, hyps))
    if denom == 0:
        return 1.0
    return 1.0 - sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / denom


def exact_match(refs: Sequence[Tokens], hyps: Sequence[Tokens]) -> float:
    """Fraction of formulas whose space-free strings are identical."""
    _check(refs, hyps)
    return sum("".join(r) == "".join(h) for r, h in zip(refs, hyps)) / len(refs)


def _ngrams(tokens: Tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(refs: Sequence[Tokens], hyps: Sequence[Tokens], max_n: int = 4) -> float:
    """Corpus BLEU (one reference per formula), in [0, 1], no smoothing."""
    _check(refs, hyps)
    matches = [0] * max_n
    totals = [0] * max_n
    ref_len = hyp_len = 0
    for ref, hyp in zip(refs, hyps):
        ref_len += len(ref)
        hyp_len += len(hyp)
        for n in range(1, max_n + 1):
            ref_counts = _ngrams(ref, n)
            hyp_counts = _ngrams(hyp, n)
            matches[n - 1] += sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    # brevity penalty: only a corpus shorter than its references is penalized
    brevity = 0.0 if hyp_len >= ref_len else 1.0 - ref_len / hyp_len
    return math.exp(log_precision + brevity)


def perplexity(total_nll: float, num_tokens: int) -> float:
    """exp of the mean per-token cross-entropy (natural log)."""
    if num_tokens <= 0:
        raise ValueError("perplexity needs at least one token")
    return math.exp(total_nll / num_tokens)


@dataclass
class Scores:
    """Every sequence metric of one evaluation run (fractions in [0, 1])."""

    num_formulas: int
    exprate: float
    le1: float
    le2: float
    wer: float
    cer: float
    bleu: float
    edit_score: float
    exact_match: float
    perplexity: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def score_all(
    refs: Sequence[Tokens],
    hyps: Sequence[Tokens],
    total_nll: float | None = None,
    num_tokens: int | None = None,
) -> Scores:
    """All metrics at once; perplexity when the summed reference NLL is given."""
    _check(refs, hyps)
    ppl = perplexity(total_nll, num_tokens) if total_nll is not None and num_tokens else None
    return Scores(
        num_formulas=len(refs),
        exprate=exprate(refs, hyps),
        le1=exprate(refs, hyps, 1),
        le2=exprate(refs, hyps, 2),
        wer=wer(refs, hyps),
        cer=cer(refs, hyps),
        bleu=bleu(refs, hyps),
        edit_score=edit_score(refs, hyps),
        exact_match=exact_match(refs, hyps),
        perplexity=ppl,
    )
