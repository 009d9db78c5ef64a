"""Each metric against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from formula_gan import metrics as M

# Four formulas with token edit distances 0, 1, 2, 3:
REFS = [
    ["x", "^", "{", "2", "}"],  # 5 tokens, 5 chars "x^{2}"
    ["a", "+", "b"],  # 3 tokens, 3 chars
    ["\\frac", "{", "1", "}", "{", "2", "}"],  # 7 tokens, 11 chars "\frac{1}{2}"
    ["\\alpha"],  # 1 token, 6 chars
]
HYPS = [
    ["x", "^", "{", "2", "}"],  # identical: d = 0
    ["a", "-", "b"],  # one substitution: d = 1
    ["\\frac", "{", "1", "}", "2"],  # "{" and "}" around 2 deleted: d = 2
    ["a", "b", "c"],  # one substitution + two insertions: d = 3
]


def test_token_edit_distances():
    assert [M.edit_distance(r, h) for r, h in zip(REFS, HYPS)] == [0, 1, 2, 3]


def test_exprate_and_error_tolerances():
    assert M.exprate(REFS, HYPS) == 1 / 4  # only formula 1 has d = 0
    assert M.exprate(REFS, HYPS, 1) == 2 / 4  # d <= 1: formulas 1, 2
    assert M.exprate(REFS, HYPS, 2) == 3 / 4  # d <= 2: formulas 1, 2, 3


def test_wer_pools_over_the_corpus():
    # (0 + 1 + 2 + 3) / (5 + 3 + 7 + 1) = 6 / 16
    assert M.wer(REFS, HYPS) == pytest.approx(6 / 16)
    # a mean of per-formula rates would be (0 + 1/3 + 2/7 + 3) / 4 = 0.905: not what WAP reports
    assert M.wer(REFS, HYPS) != pytest.approx((0 + 1 / 3 + 2 / 7 + 3) / 4)


def test_cer_on_space_free_strings():
    # "x^{2}"/"x^{2}": 0; "a+b"/"a-b": 1; "\frac{1}{2}"/"\frac{1}2": 2;
    # "\alpha"/"abc": keep "a", substitute l->b, p->c, delete "\", "h", final "a": 5
    assert [M.char_edit_distance(r, h) for r, h in zip(REFS, HYPS)] == [0, 1, 2, 5]
    # (0 + 1 + 2 + 5) / (5 + 3 + 11 + 6) = 8 / 25
    assert M.cer(REFS, HYPS) == pytest.approx(8 / 25)


def test_edit_score_is_im2markups_definition():
    # max lengths 5, 3, 7, 3 -> 18; 1 - 6 / 18
    assert M.edit_score(REFS, HYPS) == pytest.approx(1 - 6 / 18)


def test_exact_match_ignores_tokenization():
    refs, hyps = [["1", "0"], ["x"]], [["10"], ["y"]]
    assert M.exprate(refs, hyps) == 0.0  # token sequences differ in both
    assert M.exact_match(refs, hyps) == 0.5  # "10" == "10"; "x" != "y"


def test_bleu_by_hand():
    ref = "a b c d e f".split()
    # one substitution at the end: precisions 5/6, 4/5, 3/4, 2/3, no brevity penalty
    expected = (5 / 6 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25  # = (1/3) ** 0.25 = 0.7598
    assert M.bleu([ref], ["a b c d e x".split()]) == pytest.approx(expected)
    # a correct prefix of 4 of 6 tokens: precisions 1, brevity penalty exp(1 - 6/4)
    assert M.bleu([ref], ["a b c d".split()]) == pytest.approx(math.exp(-0.5))
    # no 4-gram in common: 0 (unsmoothed)
    assert M.bleu([ref], ["a b c".split()]) == 0.0
    assert M.bleu([ref], [ref]) == pytest.approx(1.0)


def test_bleu_is_a_corpus_score_and_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    refs = [r for r in REFS] + ["a b c d e f".split()]
    hyps = [h for h in HYPS] + ["a b c d e x".split()]
    # pooled counts: 1-grams: 5+2+5+0+5 = 17 of 5+3+5+3+6 = 22; ...
    ours = M.bleu(refs, hyps)
    theirs = sacrebleu.corpus_bleu(
        [" ".join(h) for h in hyps], [[" ".join(r) for r in refs]], tokenize="none", smooth_method="none", force=True
    ).score / 100
    assert ours == pytest.approx(theirs, abs=1e-9)
    unigram_precision = 17 / 22
    assert 0 < ours < unigram_precision


def test_bleu_keeps_a_token_with_a_space_whole():
    # "\ " (a control space) is one token; splitting on whitespace would make it "\" + nothing
    ref = ["a", "\\ ", "b", "c", "d"]
    assert M.bleu([ref], [ref]) == pytest.approx(1.0)


def test_perplexity_by_hand():
    # three tokens with model probabilities 1/2, 1/4, 1/8: NLL = ln 2 + ln 4 + ln 8 = 6 ln 2,
    # mean 2 ln 2, perplexity exp(2 ln 2) = 4
    nll = -(math.log(1 / 2) + math.log(1 / 4) + math.log(1 / 8))
    assert M.perplexity(nll, 3) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        M.perplexity(1.0, 0)


def test_score_all_collects_every_metric():
    s = M.score_all(REFS, HYPS, total_nll=6 * math.log(2), num_tokens=3)
    assert (s.num_formulas, s.exprate, s.le1, s.le2) == (4, 0.25, 0.5, 0.75)
    assert s.wer == pytest.approx(0.375) and s.cer == pytest.approx(0.32)
    assert s.perplexity == pytest.approx(4.0)
    assert set(s.as_dict()) >= {"exprate", "le1", "le2", "wer", "cer", "bleu", "edit_score", "exact_match", "perplexity"}


def test_mismatched_or_empty_input_is_a_clear_error():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        M.exprate([["a"], ["b"]], [["a"]])
    with pytest.raises(ValueError, match="no formulas"):
        M.wer([], [])


def test_empty_hypothesis():
    # predicting nothing: every reference token is a deletion
    assert M.wer([["a", "b"]], [[]]) == 1.0
    assert M.edit_score([["a", "b"]], [[]]) == 0.0
    assert M.bleu([["a", "b"]], [[]]) == 0.0
