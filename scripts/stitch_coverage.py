#!/usr/bin/env python3
"""How many formulas a symbol bank writes: the built-in sample and the im2latex corpus.

Prints ONE JSON line: for each formula set, the share written at all (compositions and
the fallback font allowed), the share written without any fallback (the bank's own glyphs
and compositions of them), the formulas that are rejects, and the tokens most often drawn
from the fallback font.

    python3 scripts/stitch_coverage.py [--symbols DIR] [--corpus-sample 5000] [--vocab VOCAB.json]

``--symbols``: a bank (default: the packaged one). The corpus (../shared/data or
FORMULA_GAN_DATA) is measured on a seeded sample of its formulas, in whole and within a
vocabulary (``--vocab``, e.g. prepare-crohme's vocab.json of CROHME train: the formulas a
CROHME recognizer can learn from).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from formula_gan.stitching.formulas import stitch_formulas  # noqa: E402
from formula_gan.stitching.stitcher import Stitcher  # noqa: E402
from formula_gan.synthesis.methods.stitch import symbol_bank_setting  # noqa: E402
from katex_render.normalize import Normalizer, load_vocab  # noqa: E402
from katex_render.readers import SourceFormula, read_formulas  # noqa: E402

SHARED = Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data"))


def coverage(formulas: list[str], stitcher: Stitcher) -> dict:
    results = stitch_formulas(formulas, stitcher, seed=0, render_workers=2)
    written = [r for r in results if not isinstance(r, str)]
    own = [r for r in written if all(g.source in ("bank", "composed") for g in r.glyphs)]
    font: collections.Counter[str] = collections.Counter()
    for r in written:
        font.update(g.symbol for g in r.glyphs if g.source == "hershey")
    rejects = collections.Counter(r.split(":", 1)[0] for r in results if isinstance(r, str))
    n = len(formulas)
    return {"formulas": n, "written": len(written), "written_share": round(len(written) / n, 4),
            "without_fallback": len(own), "without_fallback_share": round(len(own) / n, 4),
            "rejects_by_stage": dict(rejects), "font_tokens": dict(font.most_common(15))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", default=None, help="a symbol bank (default: the packaged one)")
    ap.add_argument("--corpus-sample", type=int, default=5000, help="corpus formulas measured (default 5000)")
    ap.add_argument("--vocab", default=None, help="a vocabulary for the 'within the vocabulary' corpus figure")
    args = ap.parse_args()
    stitcher = Stitcher(symbol_bank_setting(args.symbols))
    sample = [f.latex for f in read_formulas(REPO / "datasets" / "samples" / "formulas.txt") if isinstance(f, SourceFormula)]
    out = {"bench": "stitch-coverage", "bank": args.symbols or "packaged", "glyphs": len(stitcher.bank),
           "sample": coverage(sample, stitcher)}
    corpus_file = SHARED / "formulas" / "im2latex_formulas.norm.lst"
    if corpus_file.is_file():
        corpus = [f.latex for f in read_formulas(corpus_file) if isinstance(f, SourceFormula)]
        chosen = random.Random(0).sample(corpus, min(args.corpus_sample, len(corpus)))
        out["corpus"] = coverage(chosen, stitcher)
        if args.vocab:
            vocab = load_vocab(args.vocab)
            with Normalizer() as normalizer:
                tokens = normalizer.normalize(chosen)
            inside = [f for f, (t, _) in zip(chosen, tokens) if t and set(t) <= vocab]
            out["corpus_in_vocab"] = coverage(inside, stitcher)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
