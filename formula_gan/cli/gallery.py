"""``gallery``: argument parsing only; the page is made by formula_gan.gallery."""

from __future__ import annotations

import argparse

from formula_gan.cli import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gallery",
        help="a shard set -> one static HTML page to look at its samples",
        description=(
            "Write one self-contained HTML file (images, KaTeX and its fonts inlined: it opens offline) showing "
            "samples of a finished shard set: each image with its LaTeX rendered by KaTeX and its source; a "
            "checkbox overlays the per-symbol boxes of samples that have them (render --boxes, "
            "synthesize --method stitch)."
        ),
    )
    p.add_argument("shards", metavar="SHARDS", help="a finished shard folder (with manifest.json)")
    p.add_argument("--out", required=True, metavar="FILE", help="the page to write, e.g. gallery.html")
    p.add_argument("--samples", type=number(int, 1, 100_000), default=48, metavar="N",
                   help="how many samples (default 48)")
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=None,
                   help="pick the samples at random with this seed (default: the first ones)")
    p.set_defaults(func=_gallery)


def _gallery(args: argparse.Namespace) -> int:
    from formula_gan.gallery import write_gallery

    shown = write_gallery(args.shards, args.out, samples=args.samples, seed=args.seed)
    print(f"gallery: {shown} samples -> {args.out}")
    return 0
