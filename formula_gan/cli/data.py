"""``prepare-crohme`` and ``export``: argument parsing only; the work is in formula_gan.data."""

from __future__ import annotations

import argparse
from pathlib import Path

from formula_gan.cli import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-crohme",
        help="CROHME InkML -> handwritten training shards",
        description=(
            "Read every .inkml below INKML_DIR (sorted, deterministic), normalize its label through "
            "KaTeX's parser, rasterize its strokes, and write handwritten WebDataset shards with "
            "manifest.json (vocabulary with counts) and rejects.jsonl (one reason per unusable file). "
            "Rerunning the same command resumes; RANK/WORLD_SIZE split the work across processes."
        ),
    )
    p.add_argument("inkml_dir", metavar="INKML_DIR", help="folder with .inkml files (searched recursively)")
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument("--normalize", choices=("height128", "symbol"), default="height128",
                   help="height128: whole expression 128 px high; symbol: symbols as high as rendered "
                        "formulas' at 32 px (default: height128)")
    p.add_argument("--workers", type=number(int, 1, 256), default=1, help="parsing/rasterizing processes (default: 1)")
    p.add_argument("--shard-size", type=number(int, 1, 10**6), default=1000, help="samples per shard (default: 1000)")
    p.add_argument("--pen-width", type=number(float, 0.1, 64), default=None,
                   help="stroke width in output pixels (default: 3 for height128, 2.5 for symbol)")
    p.add_argument("--padding", type=number(int, 0, 1024), default=8, help="white margin in pixels (default: 8)")
    p.add_argument("--vocab", default=None,
                   help="report tokens outside this vocabulary (a vocab .json or a shard folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare_crohme)

    e = sub.add_parser(
        "export",
        help="shards -> im2latex or CROHME-image (WAP/BTTR/CoMER) layout",
        description=(
            "Write a finished shard folder in the layout other recognizers read: im2latex "
            "(images/ + formulas.lst + {train,validate,test}_filter.lst) or crohme-images "
            "(img/NAME.png|bmp + caption.txt with NAME<TAB>tokens)."
        ),
    )
    e.add_argument("shards", metavar="SHARDS", help="a finished shard folder (with manifest.json)")
    e.add_argument("--format", required=True, choices=("im2latex", "crohme-images"))
    e.add_argument("--out", required=True, help="output folder, new or empty (written beside it, renamed when complete)")
    e.add_argument("--split", default="train", choices=("train", "validate", "test"),
                   help="im2latex: which filter list the samples go to (the other two are written empty)")
    e.add_argument("--image-format", default="png", choices=("png", "bmp"), help="crohme-images: image file type")
    e.set_defaults(func=_export)

    v = sub.add_parser(
        "verify",
        help="check finished shard sets against their manifests (sizes, sha256, every sample)",
        description=(
            "Check that each SHARDS folder is what its manifest.json promises: every listed shard is "
            "there with its size and sha256, holds the listed number of samples, and every sample's "
            "PNG decodes and JSON parses. Commands that read whole shard sets (export, evaluate) check "
            "sizes and checksums themselves; training checks sizes and counts as it reads. "
            "Exit status 0 when every set is intact, 2 with a line naming the first shard that is not."
        ),
    )
    v.add_argument("shards", nargs="+", metavar="SHARDS", help="finished shard folders (with manifest.json)")
    v.add_argument("--quick", action="store_true", help="sizes and sha256 only; do not read the samples")
    v.set_defaults(func=_verify)


def _load_vocab(path: str):
    from formula_gan.data.vocab import Vocab

    return Vocab.from_manifest(path) if Path(path).is_dir() else Vocab.load(path)


def _prepare_crohme(args: argparse.Namespace) -> int:
    from formula_gan.data.crohme_job import CrohmeConfig, prepare_crohme
    from formula_gan.data.jobs import env_rank

    rank, world = env_rank()
    cfg = CrohmeConfig(normalize=args.normalize, pen_width=args.pen_width, padding=args.padding,
                       shard_size=args.shard_size, workers=args.workers)
    vocab = _load_vocab(args.vocab) if args.vocab else None
    report = prepare_crohme(args.inkml_dir, args.out, cfg, vocab=vocab, rank=rank, world_size=world,
                            progress=not args.no_progress)
    print(report.summary())
    if report.manifest and vocab is not None:
        outside = report.manifest.get("outside_vocab", {})
        listed = ", ".join(f"{t} ({n})" for t, n in outside.items()) or "none"
        print(f"tokens outside {args.vocab}: {listed}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from formula_gan.data.export import export_shards

    result = export_shards(args.shards, args.out, args.format, split=args.split, image_format=args.image_format)
    print(f"export: {result.count} samples -> {result.out_dir} ({args.format})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from formula_gan.data.jobs import verify

    for folder in args.shards:
        report = verify(folder, samples=not args.quick)
        what = "sizes and sha256" if args.quick else "sizes, sha256 and every sample"
        print(f"verify: {folder}: {report.shards} shards, {report.samples} samples, "
              f"{report.bytes / 1e6:.1f} MB: intact ({what})")
    return 0
