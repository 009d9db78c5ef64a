"""``split``: argument parsing only; the work is in formula_gan.data.split."""

from __future__ import annotations

import argparse

from formula_gan.cli import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="InkML files -> train and validation folders, whole formulas and whole writers apart",
        description=(
            "Split every .inkml below INKML_DIR (CROHME or MathWriting) into OUT/train and OUT/val (symbolic "
            "links) plus OUT/split.json. Every file of a held-out formula goes to validation (the formula is "
            "the label normalized by KaTeX), and where files name their writer, all of one writer's files stay "
            "on one side: validation then holds new formulas by new people, as a test set does. The split is "
            "a pure function of the labels, the writers and --seed (not of file order). Then run "
            "prepare-crohme on each folder."
        ),
    )
    p.add_argument("inkml_dir", metavar="INKML_DIR", help="folder with .inkml files (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not hold a split yet)")
    p.add_argument("--val-share", type=number(float, 0.001, 0.9), default=0.05, metavar="F",
                   help="share of the files held out for validation (default 0.05)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="which groups are held out (default 0)")
    p.set_defaults(func=_split)


def _split(args: argparse.Namespace) -> int:
    from formula_gan.data.split import split_inkml

    report = split_inkml(args.inkml_dir, args.out, val_share=args.val_share, seed=args.seed, progress=print)
    print(report.summary())
    return 0
