"""``train-gan`` and ``export-generator``: argument parsing only; the work is in formula_gan.training."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train-gan",
        help="train the self-attention GAN (rendered -> handwritten)",
        description=(
            "Train generator, discriminator and task model on the rendered and handwritten shard folders "
            "the config names. Writes into out_dir: config.yaml (resolved), checkpoint.pt (atomic, full "
            "state), log.jsonl, tb/ (TensorBoard) and samples/ (fixed-z sheets: rendered input | two "
            "translations). Runs under torchrun with the same command on 1..N GPUs."
        ),
    )
    t.add_argument("--config", required=True, help="GAN config YAML, e.g. configs/gan/base.yaml")
    t.add_argument("--resume", action="store_true", help="continue the run in out_dir from its checkpoint, exactly")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=2000 data.batch_size=32")
    t.set_defaults(func=_train)

    e = sub.add_parser(
        "export-generator",
        help="a training checkpoint's EMA generator alone, for synthesis",
        description=(
            "Write the EMA generator of CKPT (spectral norm baked into the weights) with its config, step "
            "and the checkpoint's sha256 to FILE; load it with formula_gan.models.generator_io.load_generator. "
            "--onnx also writes it as an ONNX graph for `synthesize --engine onnx` (its contract, step and the "
            "generator file's sha256 in its metadata, a checksum of its weights checked on load); CKPT may then "
            "be an exported generator file itself (the packaged formula_gan/weights/generator.pt, say), "
            "without --out."
        ),
    )
    e.add_argument("checkpoint", metavar="CKPT", help="a train-gan checkpoint.pt (or, with --onnx only, a generator file)")
    e.add_argument("--out", help="generator file to write (needed for a training checkpoint)")
    e.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size; loaded as float32)")
    e.add_argument("--onnx", metavar="FILE", help="also (or only, from a generator file) write an ONNX graph "
                                                  "(needs the extra: pip install 'formula-gan[onnx]')")
    e.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from formula_gan.training.gan_config import load_gan_config
    from formula_gan.training.gan_loop import train_gan

    cfg = load_gan_config(args.config, args.overrides)
    result = train_gan(cfg, resume=args.resume)
    shown = {k: round(v, 4) for k, v in result.metrics.items() if k.startswith(("loss_d", "loss_g", "acc"))}
    if result.is_main:
        print(f"train-gan: step {result.step}, checkpoint {result.checkpoint}, last sheet {result.sheet}, {shown}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from formula_gan.errors import FormulaGanError
    from formula_gan.training.checkpoint import export_generator

    if not args.out and not args.onnx:
        raise FormulaGanError("export-generator: give --out FILE, --onnx FILE or both")
    if args.onnx:
        from formula_gan.models.onnx_files import require_exporter

        require_exporter()  # before the torch file is written: all or nothing
    source = args.checkpoint
    if args.out:
        path, sha, step = export_generator(args.checkpoint, args.out, fp16=args.fp16)
        print(f"export-generator: {path} (step {step}, sha256 {sha})")
        source = path
    if args.onnx:
        from formula_gan.models.onnx_generator import export_generator_onnx

        info = export_generator_onnx(source, args.onnx)
        print(f"export-generator: {args.onnx} (ONNX, step {info['step']}, generator sha256 {info['generator_sha256'][:16]}…)")
    return 0
