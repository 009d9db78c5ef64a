"""Normalization of LaTeX through KaTeX's parser: the public API in one place.

``normalize.js`` parses each formula with the pinned KaTeX and writes the parse
tree back as one canonical token sequence (conventions in that file and in
``datasets/README.md``). The work is split by job:

* :mod:`katex_render.node_normalizer`: the long-lived node process (:class:`Normalizer`);
* :mod:`katex_render.tokens`: token utilities (back to LaTeX, filters, vocabularies);
* :mod:`katex_render.canonical`: today's canonical form of token sequences made
  elsewhere (a recognizer's readings, labels of sets prepared before a change);
* :mod:`katex_render.normalize_job`: the ``normalize`` command's file job.

    with Normalizer() as norm:
        norm.normalize([r"\\frac 1 2", r"\\foo"])
    # [(['\\frac', '{', '1', '}', '{', '2', '}'], None),
    #  (None, 'KaTeX parse error: Undefined control sequence: \\foo at position 1: ...')]
"""

from __future__ import annotations

from katex_render.canonical import canonicalize
from katex_render.node_normalizer import (
    HERE,
    KATEX_PACKAGE,
    SCRIPT,
    TIMEOUT_REASON,
    Normalizer,
    check_katex,
    find_node,
)
from katex_render.normalize_job import NormalizeSummary, check_outputs, normalize_file, normalize_formulas
from katex_render.readers import Reject, SourceFormula, read_formulas
from katex_render.tokens import filter_tokens, group_depth, load_vocab, reason_category, tokens_to_latex

__all__ = [
    "HERE",
    "KATEX_PACKAGE",
    "SCRIPT",
    "TIMEOUT_REASON",
    "Normalizer",
    "NormalizeSummary",
    "canonicalize",
    "check_katex",
    "check_outputs",
    "filter_tokens",
    "find_node",
    "group_depth",
    "load_vocab",
    "normalize_file",
    "normalize_formulas",
    "reason_category",
    "tokens_to_latex",
    "Reject",
    "SourceFormula",
    "read_formulas",
]
