#!/usr/bin/env python3
"""How ``recognize`` reads photos of handwriting on paper, before and after each preparation step.

Stitched formulas (the packaged symbol bank: real CROHME handwriting, CC BY-NC-SA; nothing is
written to disk) are read by the packaged recognizer three ways, and ONE JSON line is printed
with ExpRate and WER (canonical tokens on both sides) for each:

- ``clean``: the stitched image itself (``clean_all_steps``: the same with every new step on,
  which must not cost a clean image anything);
- ``photo_today``: a photo-like picture of it (``paper_photos``: the pen, the paper and its
  ruling cycling over marker / pencil / pen and ruled / squared / plain, with shadow, blur,
  perspective, JPEG and the formula small in the frame) prepared as before the new steps;
- ``photo_+STEP``: the same photos with the new steps switched on one after the other
  (cumulative, in ``STEPS`` order), the last being today's default.

``by_kind`` splits the photos by pen and paper for ``photo_today`` and the full preparation.

    python scripts/bench_paper_photos.py                 # 150 formulas, beam 1 (~5 min on one core)
    python scripts/bench_paper_photos.py --n 30 --beam 3
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from formula_gan import metrics
from formula_gan.errors import FormulaGanError
from formula_gan.recognition import Recognizer
from formula_gan.recognition.paper_photos import PhotoEffects, paper_photo
from formula_gan.recognition.preprocess import PictureSteps, prepare_picture
from formula_gan.stitching.formulas import stitch_formulas
from formula_gan.synthesis.methods.stitch import DEFAULT_BANK
from katex_render.canonical import canonicalize
from katex_render.normalize import Normalizer

REPO = Path(__file__).resolve().parents[1]
STEPS = ("ruling", "contrast", "components", "thinning")  # PictureSteps fields, switched on in this order
PENS = ("marker", "pencil", "pen")
PAPERS = ("ruled", "squared", "plain")


def simple_formulas(path: Path, vocab: set[str], max_tokens: int) -> list[tuple[str, list[str]]]:
    """(LaTeX, tokens) of the file's formulas that the recognizer can spell and that are short."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with Normalizer() as normalizer:
        normalized = normalizer.normalize(lines)
    return [(latex, tokens) for latex, (tokens, _) in zip(lines, normalized)
            if tokens and len(tokens) <= max_tokens and set(tokens) <= vocab]  # fmt: skip


def png(paper: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, "PNG")
    return buf.getvalue()


def read(rec: Recognizer, pictures: list[bytes], steps: PictureSteps) -> tuple[list[list[str]], int, float]:
    """Token readings (empty for a refused picture), how many were refused, preparation seconds."""
    start = time.perf_counter()
    papers: dict[int, np.ndarray] = {}
    for i, data in enumerate(pictures):
        try:
            papers[i] = prepare_picture(data, rec.height or 64, f"photo {i}", steps)
        except FormulaGanError:
            pass
    prep_s = time.perf_counter() - start
    readings = rec.read_arrays(list(papers.values()))
    hyps: list[list[str]] = [[] for _ in pictures]
    for i, reading in zip(papers, readings):
        hyps[i] = reading.tokens
    return hyps, len(pictures) - len(papers), prep_s


def scores(refs: list[list[str]], hyps: list[list[str]]) -> dict[str, float]:
    return {"exprate": round(100 * metrics.exprate(refs, hyps), 2), "wer": round(100 * metrics.wer(refs, hyps), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=150, help="formulas (the simple ones of the file, cycled; default 150)")
    ap.add_argument("--formulas", type=Path, default=REPO / "datasets" / "samples" / "formulas.txt")
    ap.add_argument("--max-tokens", type=int, default=15, help="simple = at most this many tokens (default 15)")
    ap.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy, cheap)")
    ap.add_argument("--recognizer", help="a recognizer checkpoint (default: the packaged one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # a measurement, not a race: the machine is shared

    rec = Recognizer(args.recognizer, beam=args.beam)
    pool = simple_formulas(args.formulas, set(rec.vocab.itos), args.max_tokens)
    picked = [pool[i % len(pool)] for i in range(args.n)]
    stitched = stitch_formulas([latex for latex, _ in picked], str(DEFAULT_BANK), seed=args.seed)
    kept = [(tokens, s.image) for (_, tokens), s in zip(picked, stitched) if not isinstance(s, str)]
    refs = canonicalize([tokens for tokens, _ in kept])
    cleans = [png(image) for _, image in kept]
    kinds = [(PENS[i % 3], PAPERS[(i // 3) % 3]) for i in range(len(kept))]
    start = time.perf_counter()
    photos = [paper_photo(image, args.seed * 100_003 + i, PhotoEffects(pen=pen, paper=paper)).jpeg_bytes(95)
              for i, ((_, image), (pen, paper)) in enumerate(zip(kept, kinds))]  # fmt: skip
    photo_s = time.perf_counter() - start

    conditions: dict[str, dict] = {}
    hyps_by: dict[str, list[list[str]]] = {}

    def measure(name: str, pictures: list[bytes], steps: PictureSteps) -> None:
        hyps, refused, prep_s = read(rec, pictures, steps)
        hyps = canonicalize(hyps)
        hyps_by[name] = hyps
        conditions[name] = {**scores(refs, hyps), "refused": refused, "prep_s_per_picture": round(prep_s / len(pictures), 3)}

    measure("clean", cleans, PictureSteps.none())
    measure("clean_all_steps", cleans, PictureSteps())
    steps = PictureSteps.none()
    measure("photo_today", photos, steps)
    for step in STEPS:
        steps = replace(steps, **{step: True})
        measure(f"photo_+{step}", photos, steps)
    assert steps == PictureSteps(), "STEPS must end at the default preparation"

    by_kind: dict[str, dict] = {}
    for label, idx in [*((f"pen={p}", [i for i, k in enumerate(kinds) if k[0] == p]) for p in PENS),
                       *((f"paper={p}", [i for i, k in enumerate(kinds) if k[1] == p]) for p in PAPERS)]:  # fmt: skip
        if idx:
            by_kind[label] = {name: scores([refs[i] for i in idx], [hyps_by[name][i] for i in idx])
                              for name in ("clean", "photo_today", f"photo_+{STEPS[-1]}")}  # fmt: skip
    examples = [{"reference": " ".join(refs[i]), "photo_today": " ".join(hyps_by["photo_today"][i]),
                 "now": " ".join(hyps_by[f"photo_+{STEPS[-1]}"][i]), "pen": kinds[i][0], "paper": kinds[i][1]}
                for i in range(min(6, len(refs)))]  # fmt: skip
    print(json.dumps({"bench": "paper_photos", "n": len(refs), "beam": args.beam, "seed": args.seed,
                      "recognizer": str(rec.checkpoint.name), "photo_s_per_picture": round(photo_s / len(refs), 3),
                      "conditions": conditions, "by_kind": by_kind, "examples": examples}, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
