#!/usr/bin/env python3
"""Benchmark of `synthesize`: end-to-end rate against the rate of each stage alone.

Prints ONE JSON line. The same formulas go through the synthesizer twice, in
the same run (shared machines are noisy; a ratio holds, an absolute time does
not):

1. stages alone: each stage (normalize, render, generate, encode, write) runs over
   every formula before the next starts (same output; memory grows with the
   input), so each stage's rate is measured with the whole machine to itself;
2. the normal pipelined run (stages in threads joined by bounded queues).

Both runs go through the public ``Synthesizer.run`` (``in_turn=True`` for the
first); ``Synthesizer.layout_start_s`` says how long the browsers took to start.

``e2e_vs_bound`` = end-to-end rate / the slowest stage's rate alone: 1.0 means
the stages overlap perfectly; the target on a 2-core CPU with a tiny generator
is >= 0.8. Both are steady-state rates: the Chromium launch, a fixed cost of
seconds that no overlap can hide, is left out of both and reported as
``browser_launch_s`` (alone, pipelined). Both runs must write the same samples
(``differing_samples`` = 0).

``--memory 2000,20000`` instead runs the pipelined synthesizer in a child process
per size and reports each child's peak RSS (``resource.getrusage`` in the
child; Chromium and node are separate processes, not counted) and its resident
set at 25/50/75/100 % of the run: the queues are bounded, so the peak must not
grow with the number of formulas and the resident set must stay flat.

Formulas: the first N lines of the shared im2latex corpus when it is there,
else the built-in sample repeated. The generator is a tiny randomly
initialized one (width multiplier 1/16), saved and loaded like a real export;
``--generator FILE`` measures a trained one instead (e.g. the packaged
``formula_gan/weights/generator.pt``), at the height it was trained at.

``--engine torch|onnx|both`` says what runs the generator (``synthesize --engine``); ``both``
measures torch, then ONNX Runtime, in the same run (the same two runs each, on the same
formulas), and reports each engine's figures under ``engines``, the ratios of their end-to-end
and generator-alone rates, and how their samples differ (``between_engines``: samples whose PNG
differs, the largest gray-level difference, the share of differing pixels; the metadata must
agree: the engine is a speed setting).

``--method refine --generator FILE`` measures stitch -> refine the same way (the refiner's
stage is ``refine``; the bank is --symbols, default the packaged one).

``--method stitch [--symbols DIR]`` measures the glyph stitcher instead: the same
two runs (stages alone, then pipelined; their samples must be identical), and,
in the same run, the renderer's rates on the same formulas and styles: plain
images (``render_plain_per_s``, the GAN path's and `render`'s), images with
per-symbol boxes (``render_boxes_per_s``, ``render --boxes``) and boxes without
images (``layout_boxes_per_s``, what stitching uses). Its formulas are those of
--corpus as for the GAN (symbols no writer has are composed or drawn from the
fallback font, as synthesize does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data"))
CORPUS = SHARED / "formulas" / "im2latex_formulas.norm.lst"
SAMPLE = REPO / "datasets" / "samples" / "formulas.txt"


def make_input(n: int, path: Path, corpus: str | None = None) -> str:
    """The first ``n`` formulas of ``corpus`` (default: the shared im2latex corpus, else the
    built-in sample), repeated if it is shorter, as a text file."""
    source = Path(corpus) if corpus else CORPUS if CORPUS.is_file() else SAMPLE
    lines: list[str] = []
    while len(lines) < n:
        before = len(lines)
        with open(source, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    lines.append(line.strip())
                    if len(lines) == n:
                        break
        if len(lines) == before:
            raise SystemExit(f"no formulas in {source}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(source)


def make_generator(path: Path, width: float) -> None:
    import torch

    from formula_gan.models.generator import Generator
    from formula_gan.models.generator_io import save_generator

    torch.manual_seed(0)
    save_generator(Generator(width=width), path, step=0, config={"benchmark": "tiny random generator"})


def synthesizer(args: argparse.Namespace, generator: Path | str, height: int | None, engine: str = "torch"):
    from formula_gan.synthesis import Resources, SynthesisConfig, Synthesizer

    resources = Resources(device=args.device, batch_size=args.batch_size, cpu_threads=args.cpu_threads,
                          render_workers=args.render_workers, engine=engine)
    if args.method == "refine":  # stitch -> refine: the refiner at its own height
        settings = {"refine": {"generator": str(generator), "oversize": "downscale"},
                    "stitch": {"symbols": args.symbols}}
        return Synthesizer("refine", SynthesisConfig(samples_per_shard=args.samples_per_shard), settings=settings,
                           resources=resources, progress=False)
    settings = {"gan": {"generator": str(generator), "height": height, "oversize": "downscale"}}
    return Synthesizer("gan", SynthesisConfig(samples_per_shard=args.samples_per_shard), settings=settings,
                       resources=resources, progress=False)


def differing_samples(a: Path, b: Path) -> int:
    """Samples (by key) whose image or metadata differ between two outputs, or that only one has."""
    from formula_gan.data.shards import read_shard

    def load(d: Path) -> dict:
        return {s.key: (s.png, s.meta) for p in sorted(d.glob("shard-*.tar")) for s in read_shard(p)}

    x, y = load(a), load(b)
    return sum(1 for k in set(x) | set(y) if x.get(k) != y.get(k))


def compare(synth: Any, formulas: Path, tmp: Path) -> tuple[dict, Any, Any]:
    """The stages-alone run, then the pipelined run of ``formulas``: the figures both methods
    report, and the two reports."""
    tmp.mkdir(parents=True, exist_ok=True)
    alone = synth.run([formulas], tmp / "alone", in_turn=True)
    alone_launch = synth.layout_start_s or 0.0
    piped = synth.run([formulas], tmp / "piped")
    piped_launch = synth.layout_start_s or 0.0
    items = piped.samples_written + piped.rejected
    # Steady-state rates: launching Chromium is a fixed cost (seconds on a busy machine)
    # that no amount of overlap can hide; it is reported apart and left out of both sides.
    steady = piped.seconds - piped_launch
    stage_rates, bound = alone_rates(alone, alone_launch, items)
    return {
        "items": items,
        "samples": piped.samples_written,
        "rejected": piped.rejected,
        "e2e_items_per_s": round(items / steady, 1),
        "e2e_samples_per_s": round(piped.samples_written / steady, 1),
        "e2e_samples_per_s_with_launch": round(piped.samples_written / piped.seconds, 1),
        "browser_launch_s": [round(alone_launch, 1), round(piped_launch, 1)],
        "stage_items_per_s_alone": stage_rates,
        "bound": bound,
        "e2e_vs_bound": round(items / steady / stage_rates[bound], 3),
        # Both runs must give the same dataset; a difference means a stage is not deterministic
        # (e.g. a render timeout under load turning a formula into a reject in one run only).
        "differing_samples": differing_samples(tmp / "alone", tmp / "piped"),
    }, alone, piped


def alone_rates(alone: Any, launch_s: float, items: int) -> tuple[dict, str]:
    """Items/s of each stage run alone, and the slowest one. Steady state: launching Chromium is
    a fixed cost (seconds on a busy machine) that no overlap can hide; it is left out."""
    times = {s.name: s.total_s - (launch_s if s.name == "layout" else 0.0) for s in alone.stages}
    rates = {name: round(items / t, 1) for name, t in times.items() if t > 0}
    return rates, min(rates, key=rates.get)


def generator_file(args: argparse.Namespace, tmp: Path) -> Path:
    """The generator to measure: --generator, else a random one of --width saved like an export."""
    if args.generator:
        return Path(args.generator)
    make_generator(tmp / "g.pt", args.width)
    return tmp / "g.pt"


def speed(args: argparse.Namespace, tmp: Path) -> dict:
    src = make_input(args.formulas, tmp / "formulas.txt", args.corpus)
    gen = generator_file(args, tmp)
    engines = ["torch", "onnx"] if args.engine == "both" else [args.engine]
    runs = {engine: engine_speed(args, gen, tmp, engine) for engine in engines}
    first = runs[engines[0]]
    shared = {k: first.pop(k) for k in ("height", "generator_width", "device")}  # threads differ by engine
    for other in engines[1:]:
        for k in shared:
            runs[other].pop(k)
    result = {
        "bench": "synthesize" if args.method == "gan" else f"synthesize-{args.method}",
        "formulas": args.formulas,
        "corpus": Path(src).name,
        "generator": Path(args.generator).name if args.generator else "random",
        **shared,
        "render_workers": args.render_workers,
        "batch_size": args.batch_size,
    }
    if len(engines) == 1:
        result.update({"engine": engines[0], **first})
    else:
        result["engines"] = runs
        result["onnx_vs_torch_e2e"] = round(runs["onnx"]["e2e_samples_per_s"] / runs["torch"]["e2e_samples_per_s"], 2)
        stage = "refine" if args.method == "refine" else "generate"
        result["onnx_vs_torch_generate_alone"] = round(runs["onnx"]["stage_items_per_s_alone"][stage]
                                                       / runs["torch"]["stage_items_per_s_alone"][stage], 2)
        # speed only: the engines' samples agree within a rounding flip of a few 8-bit pixels
        result["between_engines"] = engine_differences(tmp / "torch" / "piped", tmp / "onnx" / "piped")
    return {**result, "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}


def engine_speed(args: argparse.Namespace, gen: Path, tmp: Path, engine: str) -> dict:
    from formula_gan.synthesis.methods.gan import cpu_threads_for

    synth = synthesizer(args, gen, args.height, engine)
    figures, alone, piped = compare(synth, tmp / "formulas.txt", tmp / engine)
    return {
        "height": synth.method.gen.contract["height"],
        "generator_width": synth.method.gen.model.config["width"],
        "device": str(synth.method.gen.device),
        "cpu_threads": cpu_threads_for(synth.resources),
        **figures,
        "rejected_alone": alone.rejected,
        "sequential_items_per_s": round(figures["items"] / alone.seconds, 1),
        "busy_fraction_in_pipeline": {s.name: round(s.busy_s / piped.seconds, 2) for s in piped.stages},
    }


def engine_differences(a: Path, b: Path) -> dict:
    """How the two engines' samples differ: samples whose PNG differs, the largest gray-level
    difference of any pixel, the share of differing pixels, and whether the metadata agrees."""
    import numpy as np

    from formula_gan.data.png import decode_png
    from formula_gan.data.shards import read_shard

    def load(d: Path) -> dict:
        return {s.key: (s.png, s.meta) for p in sorted(d.glob("shard-*.tar")) for s in read_shard(p)}

    x, y = load(a), load(b)
    differing, max_diff, pixels, changed = 0, 0, 0, 0
    for key in set(x) & set(y):
        if x[key][0] != y[key][0]:
            differing += 1
            p, q = decode_png(x[key][0]).astype(int), decode_png(y[key][0]).astype(int)
            max_diff = max(max_diff, int(np.abs(p - q).max()))
            changed += int((p != q).sum())
        pixels += decode_png(x[key][0]).size
    return {"samples_compared": len(set(x) & set(y)), "samples_only_in_one": len(set(x) ^ set(y)),
            "png_differs": differing, "max_gray_diff": max_diff,
            "pixels_differing_share": round(changed / max(pixels, 1), 6),
            "meta_differs": sum(1 for k in set(x) & set(y) if x[k][1] != y[k][1])}


_CHILD = r"""
import json, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])
from bench_synthesize import synthesizer, argparse
args = argparse.Namespace(**json.loads(sys.argv[2]))
synth = synthesizer(args, sys.argv[3], args.height, "onnx" if args.engine == "onnx" else "torch")
samples, stop = [], threading.Event()
def watch():  # the resident set over the run: a plateau, not a slope, if the queues bound it
    while not stop.wait(0.5):
        with open("/proc/self/status") as f:
            samples.append(int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024)
threading.Thread(target=watch, daemon=True).start()
t0 = time.perf_counter()
report = synth.run([sys.argv[4]], sys.argv[5])
stop.set()
quarter = lambda q: round(samples[min(len(samples) - 1, int(q * len(samples)))], 1) if samples else None
print(json.dumps({"samples": report.samples_written, "rejected": report.rejected,
                  "seconds": round(time.perf_counter() - t0, 1),
                  "rss_mb_at_25_50_75_100pct": [quarter(q) for q in (0.25, 0.5, 0.75, 1.0)],
                  "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def memory(args: argparse.Namespace, tmp: Path) -> dict:
    gen = generator_file(args, tmp)
    sizes = [int(s) for s in args.memory.split(",")]
    runs = {}
    for n in sizes:
        inp = tmp / f"formulas-{n}.txt"
        make_input(n, inp, args.corpus)
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent), json.dumps(vars(args)), str(gen), str(inp), str(tmp / f"out-{n}")],
            capture_output=True, text=True, check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"child for {n} formulas failed:\n{child.stderr[-2000:]}")
        runs[str(n)] = json.loads(child.stdout.strip().splitlines()[-1])
    peaks = [runs[str(n)]["maxrss_mb"] for n in sizes]
    return {
        "bench": "synthesize-memory",
        "height": args.height,
        "generator_width": args.width,
        "runs": runs,
        "peak_rss_growth": round(peaks[-1] / peaks[0], 3),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def renderer_rates(formulas: Path, workers: int, seed: int = 0) -> dict:
    """Items/s of the renderer alone on the job's formulas and layout styles: plain, with boxes,
    boxes without images (one warm-up batch each first; the launch is not timed)."""
    from formula_gan.data.render_job import derive_seed
    from formula_gan.synthesis import SynthesisConfig
    from formula_gan.synthesis.methods.stitch import StitchSettings
    from katex_render.normalize import Normalizer, tokens_to_latex
    from katex_render.readers import SourceFormula, read_formulas
    from katex_render.renderer import Renderer
    from katex_render.styles import Style, sample_style

    cfg, layout_px = SynthesisConfig(), StitchSettings().layout_px
    read = [f for f in read_formulas(formulas) if isinstance(f, SourceFormula)]
    with Normalizer() as normalizer:
        normalized = normalizer.normalize([f.latex for f in read])
    items = []
    for f, (tokens, _) in zip(read, normalized):
        if tokens:
            font = sample_style(cfg.style, derive_seed(seed, f.source, f.latex, 0)).font
            items.append((tokens, Style(font, layout_px, 0)))
    rates = {}
    with Renderer(workers=workers) as renderer:
        warm = items[:200]
        renderer.render([(tokens_to_latex(t), s) for t, s in warm])
        renderer.render_boxes(warm)
        renderer.render_boxes(warm, images=False)
        for name, call in (("render_plain_per_s", lambda: renderer.render([(tokens_to_latex(t), s) for t, s in items])),
                           ("render_boxes_per_s", lambda: renderer.render_boxes(items)),
                           ("layout_boxes_per_s", lambda: renderer.render_boxes(items, images=False))):
            t0 = time.perf_counter()
            call()
            rates[name] = round(len(items) / (time.perf_counter() - t0), 1)
    return rates


def stitch_speed(args: argparse.Namespace, tmp: Path) -> dict:
    from formula_gan.synthesis import Resources, Synthesizer

    src = make_input(args.formulas, tmp / "formulas.txt", args.corpus)
    rates = renderer_rates(tmp / "formulas.txt", args.render_workers)
    resources = Resources(workers=args.stitch_workers, render_workers=args.render_workers)
    with Synthesizer("stitch", settings={"stitch": {"symbols": args.symbols}}, resources=resources,
                     progress=False) as synth:
        figures, _, _ = compare(synth, tmp / "formulas.txt", tmp)
        workers = synth.method.pool.workers
    return {
        "bench": "synthesize-stitch",
        "formulas": args.formulas,
        "corpus": Path(src).name,
        "render_workers": args.render_workers,
        "stitch_workers": workers,
        **figures,
        **rates,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--formulas", type=int, default=400, help="formulas for the speed run (default 400)")
    ap.add_argument("--corpus", default=None, help="formula file (default: the shared im2latex corpus, else the built-in sample)")
    ap.add_argument("--height", type=int, default=None,
                    help="working height (default: the generator's training height; 128, the paper's, for a random one)")
    ap.add_argument("--width", type=float, default=0.0625, help="random generator's width multiplier (default 1/16: tiny)")
    ap.add_argument("--generator", default=None, metavar="FILE", help="a trained generator file instead of a random one")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--render-workers", type=int, default=2)
    ap.add_argument("--cpu-threads", type=int, default=None,
                    help="the generator's torch threads (default: as synthesize, the cores the browsers leave, at least 1)")
    ap.add_argument("--samples-per-shard", type=int, default=250)
    ap.add_argument("--engine", choices=["torch", "onnx", "both"], default="torch",
                    help="what runs the generator; both: each in turn in the same run, one JSON line (default torch)")
    ap.add_argument("--memory", default=None, metavar="N1,N2", help="peak RSS of pipelined runs of N1 and N2 formulas instead")
    ap.add_argument("--method", choices=["gan", "stitch", "refine"], default="gan",
                    help="the method to measure (default gan; refine: stitch -> the --generator refiner)")
    ap.add_argument("--symbols", default=None, metavar="DIR",
                    help="stitch, refine: the symbol bank (default: the packaged one)")
    ap.add_argument("--stitch-workers", type=int, default=None, help="stitch: stitching processes (default: one per core)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if args.method == "refine" and not args.generator:
        ap.error("--method refine needs --generator FILE (a refiner: train-gan with configs/gan/refine.yaml)")
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        if args.method == "stitch":
            result = stitch_speed(args, Path(tmp))
        else:
            result = memory(args, Path(tmp)) if args.memory else speed(args, Path(tmp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
