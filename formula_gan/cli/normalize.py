"""``normalize``: argument parsing only; the work is katex_render.normalize.normalize_file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from formula_gan.cli import number

DESCRIPTION = """\
Parse every formula of INPUT with KaTeX's parser and write it as one canonical,
space-separated token sequence: `\\frac 1 2` and `\\frac{1}{2}` both give
`\\frac { 1 } { 2 }`; `x^2` gives `x ^ { 2 }`; spacing (\\, \\; \\quad \\! ~ ...),
sizes and colours are removed; synonyms get one spelling (\\le -> \\leq,
\\lt -> <, \\to -> \\rightarrow); text is `\\text { c h a r s }`.

Every formula that cannot be used is listed in the rejects report (JSON lines:
source, line, input, reason) with KaTeX's own error message or the filter that
refused it; nothing is dropped silently. The summary line counts both.

Input formats: txt (one formula per line), lst (the im2latex formulas file,
optionally restricted by an im2latex filter list `image_name line_index`),
jsonl (objects with a "latex" field). Blank lines, bytes that are not UTF-8,
control characters and bad JSON are rejected per line; CRLF line ends and a
leading byte order mark are fine.

Output (--out): with a .jsonl name, one {"source", "latex", "tokens"} object
per accepted formula; otherwise one token sequence per line (rejected lines are
left out, so use .jsonl or the rejects report to map lines back).

Exit status: 0 when the run finished (rejected formulas are reported, not
failures); 2 with a one-line message when the input, Node.js or KaTeX is missing.
"""

EPILOG = """\
examples:
  formula-gan normalize datasets/samples/formulas.txt --out out/formulas.norm.txt
  formula-gan normalize im2latex_formulas.norm.lst --filter-list im2latex_train_filter.lst \\
      --out train.jsonl --rejects train.rejects.jsonl --max-tokens 50
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "normalize",
        help="LaTeX -> canonical KaTeX tokens, with a rejects report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="formulas file (.txt, .lst, .jsonl)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="accepted formulas (default: INPUT's name + .norm.txt in the current folder; "
                        "'-' for standard output)")
    p.add_argument("--rejects", metavar="FILE", default=None,
                   help="rejects report, JSON lines (default: OUT + .rejects.jsonl)")
    p.add_argument("--format", dest="fmt", choices=("auto", "txt", "lst", "jsonl"), default="auto",
                   help="input format (default: auto, from the extension: .lst, .jsonl/.json, else txt)")
    p.add_argument("--filter-list", metavar="FILE", default=None,
                   help="im2latex filter list (`image_name line_index`, 0-based) selecting lines of a .lst INPUT")
    p.add_argument("--vocab", metavar="FILE", default=None,
                   help="keep only formulas whose tokens are all in this vocabulary: a vocab .json "
                        "(a list, or an object with \"tokens\"), a text file with one token per line, "
                        "or a shard folder with manifest.json")
    p.add_argument("--max-tokens", metavar="N", type=number(int, 1), default=None,
                   help="keep only formulas of at most N tokens (the GAN paper uses 50)")
    p.add_argument("--max-chars", metavar="N", type=number(int, 1, 10**7), default=4000,
                   help="reject inputs longer than N characters before parsing (default: 4000)")
    p.add_argument("--timeout", metavar="S", type=number(float, 0.001, 86_400), default=10.0,
                   help="seconds one formula may take before it is rejected as 'timeout' (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_normalize)


def _vocab(path: str) -> set[str]:
    if Path(path).is_dir():
        from formula_gan.data.vocab import Vocab

        return set(Vocab.from_manifest(path).tokens)
    from katex_render.normalize import load_vocab

    return load_vocab(path)


def _normalize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from katex_render.normalize import Normalizer, check_outputs, normalize_file

    out = args.out or f"{Path(args.input).name}.norm.txt"
    to_stdout = out == "-"
    rejects = args.rejects or (f"{Path(args.input).name}.rejects.jsonl" if to_stdout else f"{out}.rejects.jsonl")
    output_format = "jsonl" if not to_stdout and Path(out).suffix.lower() in (".jsonl", ".ndjson") else "txt"
    # before anything is read or opened: an output that is an input would be emptied
    check_outputs({"--out": None if to_stdout else out, "--rejects": rejects},
                  {"the input": args.input, "--filter-list": args.filter_list, "--vocab": args.vocab})
    vocab = _vocab(args.vocab) if args.vocab else None
    bar = tqdm(desc="normalize", unit=" formulas", disable=args.no_progress, file=sys.stderr)
    try:
        with Normalizer(timeout_s=args.timeout, max_chars=args.max_chars) as norm:
            summary = normalize_file(
                args.input, "/dev/stdout" if to_stdout else out, rejects, fmt=args.fmt,
                filter_list=args.filter_list, vocab=vocab, max_tokens=args.max_tokens,
                output_format=output_format, normalizer=norm, progress=bar.update,
            )
    finally:
        bar.close()
    print(f"normalize: {summary.line()}", file=sys.stderr if to_stdout else sys.stdout)
    if not to_stdout:
        print(f"normalize: wrote {out} and {rejects}")
    if summary.total == 0:
        print(f"normalize: {args.input} holds no formulas", file=sys.stderr)
    return 0
