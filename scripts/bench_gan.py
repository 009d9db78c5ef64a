#!/usr/bin/env python3
"""GAN training speed: fp32 eager vs the fast path, measured in the same run.

Runs full training steps (D step + G step + EMA, the task model included) of a GAN config
on a fixed synthetic batch (the data loader is not measured) and prints ONE JSON line:
steps/s and images/s (generator inputs per second) for

- ``fp32``: float32, contiguous tensors, eager;
- ``fast``: bf16 autocast + channels-last + torch.compile on CUDA; on CPU, where bf16
  autocast and compile usually do not pay, channels-last (and compile with --compile).

    python scripts/bench_gan.py                                  # base config, batch 32, 128×384
    python scripts/bench_gan.py --config tiny --device cpu --steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from formula_gan.data.batch import Batch
from formula_gan.devices import resolve_device
from formula_gan.training.distributed import DistInfo
from formula_gan.training.gan_config import load_gan_config
from formula_gan.training.gan_loop import setup_parts
from formula_gan.training.gan_step import gan_step, step_generator

REPO = Path(__file__).resolve().parents[1]


def synthetic_batch(b: int, h: int, w: int, tokens: int, vocab: int, domain: int, seed: int) -> Batch:
    """Sparse random strokes (about 8 % ink, like formulas) and random token sequences."""
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(b, 1, h, w, generator=g) < 0.08).float()
    masks = torch.ones(b, h, w, dtype=torch.bool)
    toks = torch.randint(4, vocab, (b, tokens), generator=g)
    return Batch(images, masks, toks, torch.full((b,), tokens), torch.full((b,), domain), [str(i) for i in range(b)])


def run(config: str, overrides: list[str], device: torch.device, args: argparse.Namespace) -> dict:
    cfg = load_gan_config(REPO / "configs" / "gan" / f"{config}.yaml", [*overrides, "progress=false"])
    info = DistInfo(0, 0, 1, device)
    parts, settings = setup_parts(cfg, args.vocab, info)
    source = synthetic_batch(args.batch, args.height, args.width, args.tokens, args.vocab, 0, 1)
    real = synthetic_batch(args.batch, args.height, args.width, args.tokens, args.vocab, 1, 2)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    start = time.perf_counter()
    for step in range(args.warmup):  # compilation and allocator warm-up happen here
        gan_step(parts, source, real, settings, step, step_generator(0, step))
    sync()
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        gan_step(parts, source, real, settings, step, step_generator(0, step))
    sync()
    seconds = time.perf_counter() - start
    out = {
        "steps_per_s": round(args.steps / seconds, 3),
        "images_per_s": round(args.steps * args.batch / seconds, 1),
        "warmup_s": round(warmup_s, 1),
        "precision": str(settings.amp_dtype or "float32").replace("torch.", ""),
        "channels_last": cfg.channels_last,
        "compile": cfg.compile,
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="base", help="a name in configs/gan/ (default: base)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--tokens", type=int, default=24, help="tokens per formula (the task model's GRU runs this many steps)")
    p.add_argument("--vocab", type=int, default=110, help="vocabulary size (CROHME's is about 110)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (compilation)")
    p.add_argument("--compile", action="store_true", help="also compile on CPU (needs a C++ compiler; slow to start)")
    args = p.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes here: let cuDNN pick its fastest kernels
    base = ["precision=fp32", "channels_last=false", "compile=false", f"device={device}"]
    fast = [f"precision={'bf16' if cuda else 'fp32'}", "channels_last=true",
            f"compile={'true' if cuda or args.compile else 'false'}", f"device={device}"]
    results = {"fp32": run(args.config, base, device, args), "fast": run(args.config, fast, device, args)}
    print(json.dumps({
        "bench": "gan_train_step",
        "config": args.config,
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "batch": args.batch, "height": args.height, "width": args.width, "tokens": args.tokens,
        **results,
        "speedup": round(results["fast"]["steps_per_s"] / results["fp32"]["steps_per_s"], 2),
    }))


if __name__ == "__main__":
    main()
