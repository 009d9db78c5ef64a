"""``formula-gan synthesize``: the main job — formulas in, a handwritten dataset out."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from formula_gan.cli import method_overrides, number
from formula_gan.synthesis.methods import method_names


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "synthesize",
        help="turn formulas into a sharded dataset of handwriting",
        description=(
            "Read formulas (.txt one per line, im2latex .lst, .jsonl with 'latex'), normalize them and lay "
            "them out with KaTeX, write each in handwriting, and write WebDataset shards, manifest.json, "
            "rejects.jsonl and preview.png. By default (--method stitch) real handwritten symbols of a symbol "
            "bank (the packaged one, or --symbols DIR) are placed where KaTeX lays them out; --method gan "
            "translates KaTeX's renderings with a trained generator (the paper's pipeline). Streams (memory "
            "does not grow with the input), resumes (rerun the same command after an interruption) and splits "
            "(--num-shards/--shard-index, or RANK/WORLD_SIZE under torchrun). Options marked gan: or stitch: "
            "belong to that method; given to another, they are an error."
        ),
    )
    p.add_argument("--method", default="stitch", metavar="NAME",
                   help=f"how to write: {', '.join(method_names())} (default stitch; or a plug-in as module:Class). "
                        "stitch: real handwritten glyphs of a symbol bank placed in KaTeX's per-symbol boxes (each "
                        "sample's JSON gets their boxes, writers and glyph sources); gan: a trained generator "
                        "translates the renderings (the paper's pipeline)")
    p.add_argument("--symbols", metavar="DIR",
                   help="stitch: a symbol bank (formula-gan prepare-symbols --out DIR); default: the packaged bank "
                        "(CROHME, CC BY-NC-SA: see formula_gan/weights/symbols/NOTICE)")
    p.add_argument("--fallback-symbols", metavar="DIR",
                   help="stitch: a second symbol bank for what --symbols has no glyph for (before the Hershey font)")
    p.add_argument("--no-fallback", action="store_const", const=False, default=None,
                   help="stitch: a formula with a symbol no bank has is a reject (default: drawn in a Hershey stroke "
                        "font, recorded in the sample's glyph_sources)")
    p.add_argument("--ink", action="store_true", default=None,
                   help="stitch: also write each sample's strokes, <key>.inkml in the shard")
    p.add_argument("--stitch-workers", type=number(int, 0, 256), default=None, metavar="N",
                   help="stitch: processes that stitch and rasterize (default: one per core; 0: in this process)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="formula files")
    gen = p.add_mutually_exclusive_group()
    gen.add_argument("--generator", metavar="FILE",
                     help="gan: an exported generator (formula-gan export-generator); default: the packaged trained "
                          "generator (formula_gan/weights/generator.pt) when the installation has one")
    gen.add_argument(
        "--untrained-generator",
        action="store_true",
        default=None,
        help="gan: a randomly initialized generator: exercises the pipeline, the output is NOT handwriting",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed if it holds this same job)")
    p.add_argument("--variants", type=number(int, 1, 10_000), default=None, metavar="K", help="handwritings per formula (default 1)")
    p.add_argument("--seed", type=number(int, 0, 2**63 - 1), default=None, help="job seed: styles and z of every sample derive from it (default 0)")
    p.add_argument("--oversize", choices=["skip", "downscale"], default=None,
                   help="gan: inputs over 640,000 px at the working height: skip (reported as rejects) or downscale "
                        "(drawn smaller; reported in the sample and the shard stats); default skip")
    p.add_argument("--max-tokens", type=number(int, 1), default=None, metavar="N", help="reject formulas of more than N tokens")
    p.add_argument("--height", type=number(int, 32, 4096), default=None, help="gan: working height: the height the generator was trained at (default 128)")
    p.add_argument("--samples-per-shard", type=number(int, 1, 10**6), default=None, metavar="N", help="(default 1000)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="synthesis config: the shared keys (formula_gan.synthesis.SynthesisConfig) and the method's "
                        "section (gan:, stitch:, ...); the options above override it, and another method's "
                        "section or option is an error")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set style.font_size=[24,40] (repeatable)")
    p.add_argument("--device", default=None, help="gan: cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument("--batch-size", type=number(int, 1, 4096), default=None, metavar="B", help="gan: generator batch size (default 32)")
    p.add_argument("--render-workers", type=number(int, 1, 64), default=None, metavar="N", help="Chromium processes (default 2; one per core)")
    p.add_argument("--cpu-threads", type=number(int, 1, 1024), default=None, metavar="N",
                   help="gan: threads of a CPU generator (default: the cores the renderers leave, at least 1; "
                        "at least 2 with --engine onnx, whose idle threads sleep)")
    p.add_argument("--engine", choices=["torch", "onnx"], default=None,
                   help="gan, refine: what runs the generator: torch (default) or onnx (ONNX Runtime on the CPU, "
                        "faster; pip install 'formula-gan[onnx]'; --generator may then be an ONNX file of "
                        "export-generator --onnx). Speed only: outputs agree within 1e-4, a job resumes with either")
    p.add_argument("--num-shards", type=number(int, 1, 10**6), default=None, metavar="N", help="split the job into N parts ...")
    p.add_argument("--shard-index", type=number(int, 0, 10**6), default=None, metavar="I", help="... and run part I (0-based)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# Options that set a key of the method's section(s), by the key they set: a method whose
# sections have no such key refuses the option (--symbols means nothing to the GAN).
SECTION_OPTIONS = {"generator": "generator", "untrained_generator": "untrained", "symbols": "symbols", "ink": "ink",
                   "height": "height", "oversize": "oversize", "fallback_symbols": "fallback_symbols",
                   "no_fallback": "fallback"}
# Options that set a resource (speed only), by the resource; the method must use it.
RESOURCE_OPTIONS = {"device": "device", "batch_size": "batch_size", "cpu_threads": "cpu_threads",
                    "stitch_workers": "workers", "engine": "engine"}


def run(args: argparse.Namespace) -> int:
    from formula_gan.errors import FormulaGanError
    from formula_gan.synthesis import Resources, Synthesizer, method_class

    if (args.num_shards is None) != (args.shard_index is None):
        raise FormulaGanError("--num-shards and --shard-index go together")
    method = method_class(args.method)
    flags = {"variants": args.variants, "seed": args.seed, "max_tokens": args.max_tokens,
             "samples_per_shard": args.samples_per_shard}
    overrides = [f"{key}={value}" for key, value in flags.items() if value is not None]
    overrides += method_overrides(method, args, SECTION_OPTIONS)
    overrides += list(args.set)
    given = {name: getattr(args, option) for option, name in RESOURCE_OPTIONS.items() if getattr(args, option) is not None}
    unused = [f"--{option.replace('_', '-')}" for option, name in RESOURCE_OPTIONS.items()
              if name in given and name not in method.uses]
    if unused:
        raise FormulaGanError(f"{', '.join(unused)}: not used by method {method.name!r}")
    resources = Resources(**given, **({"render_workers": args.render_workers} if args.render_workers else {}))
    with Synthesizer.from_config(args.method, args.config, overrides, resources=resources, given=given,
                                 progress=not args.no_progress) as synth:
        report = synth.run(args.inputs, args.out, rank=args.shard_index, world_size=args.num_shards)
    _print_report(report)
    if report.generator.get("untrained"):
        print("NOTE: made with an UNTRAINED generator: these images are not handwriting.", file=sys.stderr)
    return 0


def _print_report(report: Any) -> None:
    print(
        f"synthesize: {report.samples_written} samples in {report.shards_written} new shards, "
        f"{report.rejected} rejected, {report.downscaled} downscaled, {report.seconds:.1f} s",
        file=sys.stderr,
    )
    if report.manifest is None:
        print(f"synthesize: this part is done; {report.out_dir} gets its manifest.json when every part is", file=sys.stderr)
    else:
        m = report.manifest
        print(f"shards:   {report.out_dir} ({m['num_samples']} samples in {m['num_shards']} shards; "
              f"rejects: {report.out_dir / 'rejects.jsonl'} ({m['num_rejected']}))")
        if report.preview is not None:
            print(f"preview:  {report.preview}")
