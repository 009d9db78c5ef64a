"""``render`` and ``prepare-formulas``: argument parsing only; the work is in
formula_gan.data.render_job and katex_render."""

from __future__ import annotations

import argparse
from pathlib import Path

from formula_gan.cli import number

_COMMON_EPILOG = (
    "Output: WebDataset shards shard-NNNNNN.tar (<key>.png 8-bit grayscale, dark ink on white; "
    "<key>.json with latex, tokens, source, domain, style, seed), manifest.json (counts, vocabulary, "
    "config, checksums) and rejects.jsonl (source, line, input, reason). Rerunning the same command "
    "into the same --out resumes: complete shards are kept, the result is the same as an "
    "uninterrupted run. RANK/WORLD_SIZE split the shards across processes.\n\n"
    "Example: formula-gan render datasets/samples/formulas.txt --out out/rendered --variants 2 "
    "renderer.workers=2"
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="formulas: .txt (one per line), im2latex .lst, .jsonl with \"latex\", "
                   "or a folder of CROHME InkML files (their truth labels)")
    p.add_argument("--out", required=True, help="output shard folder (created; resumed when it holds this job)")
    p.add_argument("--workers", type=number(int, 1, 64), default=None,
                   help="browser processes (default: renderer.workers of the config, 2)")
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=0, help="job seed: styles derive from (seed, source, formula, variant)")
    p.add_argument("--variants", type=number(int, 1, 10_000), default=1, help="images per formula, each with its own style (default: 1)")
    p.add_argument("--config", default=None,
                   help="render config YAML (default: configs/render.yaml when present, else built-in defaults)")
    p.add_argument("--shard-size", type=number(int, 1, 10**6), default=1000, help="items per shard (default: 1000)")
    p.add_argument("--format", dest="fmt", default="auto", choices=("auto", "txt", "lst", "jsonl"),
                   help="input format (default: by file extension)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--boxes", action="store_true",
                   help="store each visible symbol's box in the sample JSON: \"boxes\": [[token index, x0, y0, x1, y1], "
                        "...] in image pixels (slower; a formula whose symbols cannot all be boxed is a reject)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. renderer.batch_size=128 style.font_size=[24,40]")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="formulas -> rendered image shards (KaTeX in headless Chromium)",
        description=(
            "Normalize every formula of INPUT through KaTeX's parser, render each accepted one "
            "(--variants times) with a random font command, size and padding (configs/render.yaml), "
            "crop it tight, and write rendered WebDataset shards."
        ),
        epilog=_COMMON_EPILOG,
    )
    _add_common(p)
    p.add_argument("--vocab", default=None, help="keep only formulas whose tokens are all in this vocabulary "
                                                 "(a vocab .json/.txt, or a shard folder / manifest.json)")
    p.add_argument("--max-tokens", type=number(int, 1), default=None, help="keep only formulas with at most N tokens")
    p.set_defaults(func=_render, command_name="render", max_width=None, filter_list=None)

    q = sub.add_parser(
        "prepare-formulas",
        help="a formula corpus -> rendered GAN training shards (the paper's filters)",
        description=(
            "Like render, with the paper's filters for GAN training: at most --max-tokens tokens, "
            "tokens in --vocab (e.g. the handwritten set's manifest), and at most --max-width px "
            "wide once scaled to 128 px high."
        ),
        epilog=_COMMON_EPILOG,
    )
    _add_common(q)
    q.add_argument("--filter-list", default=None, help="im2latex filter list selecting lines of a .lst INPUT")
    q.add_argument("--vocab", default=None, help="vocabulary: a vocab .json/.txt, or a shard folder / its manifest.json")
    q.add_argument("--max-tokens", type=number(int, 1), default=50, help="at most N tokens (default: 50, the paper's)")
    q.add_argument("--max-width", type=number(int, 1, 10**6), default=512,
                   help="at most this many px wide at height 128 (default: 512, the paper's)")
    q.set_defaults(func=_render, command_name="prepare-formulas")


def _render(args: argparse.Namespace) -> int:
    from formula_gan.config import load_config
    from formula_gan.data.render_job import RenderJobSpec, load_vocab_tokens, run_render_job
    from katex_render.renderer import RenderConfig

    config_path = args.config
    if config_path is None:
        default = Path(__file__).resolve().parents[2] / "configs" / "render.yaml"
        config_path = default if default.is_file() else None
    config = load_config(RenderConfig, config_path, args.overrides)
    spec = RenderJobSpec(
        input=args.input, out=args.out, seed=args.seed, variants=args.variants, shard_size=args.shard_size,
        fmt=args.fmt, filter_list=args.filter_list, vocab=load_vocab_tokens(args.vocab) if args.vocab else None,
        vocab_origin=args.vocab, max_tokens=args.max_tokens, max_width=args.max_width, command=args.command_name,
        boxes=args.boxes,
    )
    summary = run_render_job(spec, config, workers=args.workers, progress=not args.no_progress)
    print(f"formula-gan {args.command_name}: {summary.line()}")
    return 0
