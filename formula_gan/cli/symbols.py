"""``prepare-symbols``: argument parsing only; the work is in formula_gan.data.prepare_symbols."""

from __future__ import annotations

import argparse

from formula_gan.cli import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-symbols",
        help="CROHME or MathWriting InkML -> a bank of handwritten symbols (for synthesize --method stitch)",
        description=(
            "Read every .inkml below CROHME_DIR (use the training files), map each trace group's label to one "
            "token of the project's vocabulary through the KaTeX normalizer, and write its strokes, token, writer "
            "and file into one compact file (symbols.npz), with manifest.json (counts per token, the tokens with "
            "fewer than 20 samples, reject reasons) and rejects.jsonl (every trace group or file not used, and why). "
            "Rerunning replaces the three files."
        ),
    )
    p.add_argument("crohme_dir", metavar="CROHME_DIR", help="folder with .inkml files (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--writers", type=number(int, 1), default=None, metavar="N",
                   help="keep only N whole writers (all their glyphs), chosen to cover every token: the small bank "
                        "the package ships is made this way (see formula_gan/weights/symbols/README.md)")
    p.add_argument("--min-per-token", type=number(int, 0), default=10, metavar="K",
                   help="with --writers: top up every token to K glyphs from other writers (default 10)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="with --writers: breaks ties, picks top-ups (default 0)")
    p.add_argument("--keep-outliers", action="store_true",
                   help="keep glyphs whose shape is far from their token's others (default: left out, counted)")
    p.add_argument("--glyph-list", metavar="FILE",
                   help="MathWriting's symbols.jsonl (default: the one in CROHME_DIR or its parent, if any)")
    p.add_argument("--measure-layout", action="store_true",
                   help="also measure how these writers place symbols against KaTeX's layout of the same formulas "
                        "(layout.json, used by the stitcher's 'means' and 'measured' layouts; needs Chromium)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare_symbols)


def _prepare_symbols(args: argparse.Namespace) -> int:
    from formula_gan.data.prepare_symbols import prepare_symbols

    report = prepare_symbols(args.crohme_dir, args.out, progress=not args.no_progress, writers=args.writers,
                             min_per_token=args.min_per_token, keep_outliers=args.keep_outliers,
                             glyph_list=args.glyph_list, seed=args.seed, measure_layout=args.measure_layout)
    print(report.summary())
    return 0
