"""``train-recognizer``, ``evaluate``, ``score-generator``: the downstream recognizer and its measurements."""

from __future__ import annotations

import argparse
import json
import sys

from formula_gan.cli import number


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "train-recognizer",
        help="train the downstream formula recognizer (DenseWAP or Transformer) on a weighted mix of shard sets",
        description=(
            "Train a recognizer from a YAML config (configs/recognizer/*.yaml) with optional a.b=c overrides. "
            "Validates greedily on data.val every train.val_every steps and keeps best.pt (by ExpRate) and "
            "last.pt in the run folder; rerun the same command to resume. Under torchrun, one process per GPU."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="a recognizer config YAML")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_steps=1000")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=train)

    p = sub.add_parser(
        "evaluate",
        help="score a recognizer checkpoint on shard sets: ExpRate, <=1/<=2 errors, WER, CER, BLEU, perplexity",
        description=(
            "Decode every sample of the given finished shard sets (beam search, length-normalized), print a "
            "table of metrics and optionally write them as JSON with per-sample predictions."
        ),
    )
    p.add_argument("--recognizer", required=True, metavar="CKPT", help="a recognizer checkpoint (best.pt / last.pt)")
    p.add_argument("shards", nargs="+", metavar="SHARDS", help="finished shard folders (with manifest.json)")
    p.add_argument("--beam", type=number(int, 1, 100), default=10, help="beam width; 1 = greedy (default 10)")
    p.add_argument("--batch-size", type=number(int, 1, 1024), default=8, help="(default 8)")
    p.add_argument("--max-len", type=number(int, 1, 10_000), default=None,
                   help="longest decoded formula (default: the model's, 200)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when present)")
    p.add_argument("--out", metavar="FILE.json", help="write every metric and per-sample predictions here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=evaluate)

    p = sub.add_parser(
        "score-generator",
        help="the paper's Table 1 protocol: train the task model on a generator's output, report test perplexity",
        description=(
            "Synthesize a fixed formula set with the generator (or take an already synthesized shard set with "
            "--synthetic), train the small task recognizer on it alone for the config's fixed step budget, and "
            "report perplexity and ExpRate of the final model on the test shard sets (CROHME test 2014)."
        ),
    )
    p.add_argument("--generator", metavar="FILE", help="an exported generator (formula-gan export-generator)")
    p.add_argument("--formulas", nargs="+", default=[], metavar="FILE", help="the fixed formula set to synthesize")
    p.add_argument("--synthetic", metavar="DIR", help="an already synthesized shard set (instead of --generator)")
    p.add_argument("--test", nargs="+", required=True, metavar="DIR", help="test shard sets (CROHME test 2014)")
    p.add_argument("--config", metavar="FILE", help="task-model config (default configs/recognizer/score_generator.yaml)")
    p.add_argument("--out-dir", default="runs/score-generator", metavar="DIR", help="(default runs/score-generator)")
    p.add_argument("--beam", type=number(int, 1, 100), default=1, help="beam width for the test ExpRate (default 1: greedy)")
    p.add_argument("--device", default="auto")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="task-model config overrides")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=score)


def train(args: argparse.Namespace) -> int:
    from formula_gan.config import load_config
    from formula_gan.recognition.config import RecognizerRunConfig
    from formula_gan.training.recognizer_loop import train_recognizer

    cfg = load_config(RecognizerRunConfig, args.config, args.overrides)
    summary = train_recognizer(cfg, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from formula_gan.errors import FormulaGanError
    from formula_gan.evaluation import evaluate_checkpoint
    from formula_gan.reports import format_table, write_json

    if args.beam < 1:
        raise FormulaGanError(f"--beam must be at least 1, got {args.beam}")
    result = evaluate_checkpoint(
        args.recognizer, args.shards, beam=args.beam, batch_size=args.batch_size, device=args.device,
        max_len=args.max_len, progress=not args.no_progress,
    )  # fmt: skip
    print(format_table(result.scores, f"{args.recognizer} (beam {args.beam})"))
    if args.out:
        write_json(args.out, result.to_json({"recognizer": args.recognizer, "shards": args.shards}))
        print(f"evaluate: wrote {args.out}", file=sys.stderr)
    return 0


def score(args: argparse.Namespace) -> int:
    from formula_gan.reports import format_table
    from formula_gan.scoring.table1 import score_generator

    payload = score_generator(
        args.test, synthetic_dir=args.synthetic, generator=args.generator, formulas=args.formulas,
        config=args.config, overrides=args.overrides, out_dir=args.out_dir, beam=args.beam,
        device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    print(format_table(payload["metrics"], f"generator {args.generator or args.synthetic}"))
    print(f"score-generator: wrote {args.out_dir}/score.json", file=sys.stderr)
    return 0
