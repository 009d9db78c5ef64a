"""``prepare-symbols``: argument parsing only; the work is in formula_gan.data.symbol_bank."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-symbols",
        help="CROHME InkML -> a bank of handwritten symbols (for synthesize --method stitch)",
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare_symbols)


def _prepare_symbols(args: argparse.Namespace) -> int:
    from formula_gan.data.symbol_bank import prepare_symbols

    report = prepare_symbols(args.crohme_dir, args.out, progress=not args.no_progress)
    print(report.summary())
    return 0
