"""Today's canonical form of token sequences that were made elsewhere.

Labels are canonical when they are made (``normalize``, every prepare command),
but sequences also come from places that did not go through today's normalizer:
a recognizer's readings (which copy the habits of the labels it was trained on,
such as braces around a whole formula), sets prepared before the normalizer's
rules changed, predictions files of other tools. Every metric compares the
canonical forms of both sides, so that ``{ x ^ { n } } { e ^ { - x } }`` and
``x ^ { n } e ^ { - x }`` are the same reading and models trained on older
labels stay comparable with new ones.

A sequence that does not parse (a reading with an unbalanced brace) is left as
it is: it cannot be made canonical, and it is wrong either way.
"""

from __future__ import annotations

from typing import Sequence

from katex_render.node_normalizer import Normalizer


def canonicalize(
    sequences: Sequence[Sequence[str]], normalizer: Normalizer | None = None
) -> list[list[str]]:
    """Each token sequence in today's canonical form (unparsable or empty ones as given).

    ``normalizer``: a running one to reuse; otherwise one is started for this call.
    Identical sequences are normalized once (a test set's references repeat).
    """
    unique = sorted({" ".join(seq) for seq in sequences if len(seq) > 0})
    if not unique:
        return [list(seq) for seq in sequences]
    own = normalizer is None
    norm = normalizer or Normalizer()
    try:
        results = norm.normalize(unique)
    finally:
        if own:
            norm.close()
    canonical = {text: tokens for text, (tokens, _) in zip(unique, results) if tokens is not None}
    return [list(canonical.get(" ".join(seq), seq)) for seq in sequences]
