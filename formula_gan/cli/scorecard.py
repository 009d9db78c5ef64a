"""``scorecard``: argument parsing only; the work is in formula_gan.scoring.scorecard."""

from __future__ import annotations

import argparse
import sys

from formula_gan.cli import method_overrides, number
from formula_gan.synthesis.methods import method_names


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "scorecard",
        help="a generator's scorecard on CROHME test 2014: content kept (ExpRate, WER) and realism (Fréchet distance)",
        description=(
            "Render and synthesize the formulas of a real test set with a fixed seed, then let one "
            "recognizer (default: the packaged judge, trained on real CROHME alone) read the real, rendered "
            "and synthetic images (ExpRate, <=1, <=2, WER, CER) and measure the Fréchet distance of its encoder features to the real test "
            "images, with real train <-> real test as the floor and rendered <-> real test as the baseline. "
            "Writes scorecard.json, scorecard.md and sheet.png (real | rendered | synthetic) to --out. "
            "(score-generator is the paper's slower Table 1 protocol: it trains a task model on the output.)"
        ),
    )
    p.add_argument("--method", default="gan", metavar="NAME",
                   help=f"the method that writes the test formulas: {', '.join(method_names())} (default gan)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--generator", metavar="FILE", help="gan: an exported generator (default: the packaged one)")
    which.add_argument("--untrained-generator", action="store_true", default=None,
                       help="gan: random weights, the sanity floor")
    p.add_argument("--symbols", metavar="DIR", help="stitch: the symbol bank (default: the packaged one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the method, e.g. --set stitch.spread=0.1 (repeatable)")
    p.add_argument(
        "--synthetic", metavar="DIR",
        help="instead of a method: a shard set already synthesized from OUT/formulas.txt (line i = test sample i)",
    )  # fmt: skip
    p.add_argument("--test", required=True, metavar="DIR", help="real test shards (prepare-crohme of CROHME test 2014)")
    p.add_argument("--train", required=True, metavar="DIR", help="real training shards (the floor of the distances)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the sets, scorecard.json/.md and sheet.png")
    p.add_argument("--recognizer", metavar="CKPT",
                   help="the judge (default: the packaged judge, a recognizer trained on real CROHME handwriting "
                        "alone: one trained with synthetic data would favour the data it saw)")
    p.add_argument("--seed", type=number(int, 0), default=0, help="render styles and z (default 0)")
    p.add_argument("--beam", type=number(int, 1, 100), default=1, help="beam width of the readings (default 1: greedy)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from formula_gan.errors import FormulaGanError
    from formula_gan.scoring.scorecard import scorecard, scorecard_table
    from formula_gan.synthesis import method_class

    options = {"generator": "generator", "untrained_generator": "untrained", "symbols": "symbols"}
    if args.synthetic:
        given = [f"--{o.replace('_', '-')}" for o in options if getattr(args, o) is not None] + (["--set"] if args.set else [])
        if given:
            raise FormulaGanError(f"{', '.join(given)}: settings of a method; --synthetic scores a set made already")
        method = None
        overrides: list[str] = []
    else:
        method = method_class(args.method)
        overrides = method_overrides(method, args, options) + list(args.set)
    payload = scorecard(
        args.out, args.test, args.train, method=None if method is None else method.name, overrides=overrides,
        synthetic_dir=args.synthetic, recognizer=args.recognizer, seed=args.seed, beam=args.beam,
        device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    print(scorecard_table(payload))
    print(f"scorecard: {payload['seconds']} s; wrote {args.out}/scorecard.json, scorecard.md, sheet.png", file=sys.stderr)
    return 0
