#!/usr/bin/env python3
"""Benchmark of reading formulas: the torch engine against ONNX Runtime, in the same run.

Prints ONE JSON line: images/s of each engine, greedy and beam 10 (``--beams``), their ratio,
and the share of images whose readings are identical (tokens) between the engines.

Images: the first N files of CROHME test 2014 (``crohme_test_2014.tar.xz`` of the shared data,
unpacked to a temporary folder, each InkML rasterized as ``recognize`` does), else N pictures
of random digit and operator strings drawn with PIL's font. Preparing the pictures is not
timed; what is timed is ``Recognizer.read_arrays`` (width-sorted batches, encoder and
decoding), after one warm-up batch per engine. Both engines use the same number of threads
(``--threads``: torch's ``set_num_threads`` and ONNX Runtime's intra-op threads). Engines
alternate per beam width, so that a change in the machine's load hits both alike (the
machines are shared: a ratio holds, an absolute rate does not).

    python scripts/bench_recognize.py --images 200            # a quick figure
    python scripts/bench_recognize.py --images 0 --beams 1,10 # all 986: the parity share
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data"))
CROHME_TEST = SHARED / "crohme" / "crohme_test_2014.tar.xz"


def crohme_papers(n: int, height: int, tmp: Path) -> tuple[list, list[str]]:
    """The first ``n`` (0: all) CROHME test 2014 files, prepared as ``recognize`` prepares them."""
    from formula_gan.errors import FormulaGanError
    from formula_gan.recognition.preprocess import prepare_file

    with tarfile.open(CROHME_TEST) as tar:
        tar.extractall(tmp, filter="data")
    files = sorted(tmp.rglob("*.inkml"))
    papers, names = [], []
    for f in files[: n or None]:
        try:
            papers.append(prepare_file(f, height))
            names.append(f.name)
        except FormulaGanError:
            continue  # an unreadable file is recognize's error line; it is not part of the figure
    return papers, names


def drawn_papers(n: int, height: int) -> tuple[list, list[str]]:
    """``n`` pictures of random digit and operator strings (no data needed)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    rng, font = random.Random(0), ImageFont.load_default()
    papers, names = [], []
    for i in range(n or 200):
        s = "".join(rng.choice("0123456789+-=x") for _ in range(rng.randint(1, 12)))
        im = Image.new("L", (16 + 14 * len(s), 32), 255)
        ImageDraw.Draw(im).text((6, 8), " ".join(s), fill=0, font=font)
        papers.append(np.array(im.resize((max(16, im.width * height // 32), height), Image.BILINEAR)))
        names.append(s)
    return papers, names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200, help="images to read (0: all of CROHME test 2014; default 200)")
    ap.add_argument("--recognizer", default=None, help="a recognizer file (default: the packaged one)")
    ap.add_argument("--beams", default="1,10", help="beam widths to measure (default 1,10)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="threads of each engine (default 1)")
    ap.add_argument("--drawn", action="store_true", help="drawn digit strings even when CROHME is there")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from formula_gan.recognition import Recognizer

    torch.set_num_threads(args.threads)
    beams = [int(b) for b in args.beams.split(",")]
    t0 = time.perf_counter()
    torch_rec = Recognizer(args.recognizer, batch_size=args.batch_size)
    torch_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx_rec = Recognizer(args.recognizer, batch_size=args.batch_size, engine="onnx", threads=args.threads)
    onnx_load = time.perf_counter() - t0  # a torch file: converted to ONNX in memory, then loaded
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        use_crohme = CROHME_TEST.is_file() and not args.drawn
        papers, names = (crohme_papers(args.images, torch_rec.height, Path(tmp)) if use_crohme
                         else drawn_papers(args.images, torch_rec.height))
    result: dict = {"bench": "recognize", "images": len(papers),
                    "source": "crohme test 2014" if use_crohme else "drawn digit strings",
                    "recognizer": Path(args.recognizer).name if args.recognizer else "packaged recognizer.pt",
                    "threads": args.threads, "batch_size": args.batch_size,
                    "load_s": {"torch": round(torch_load, 2), "onnx": round(onnx_load, 2)}}
    for rec in (torch_rec, onnx_rec):  # warm-up: first calls allocate
        rec.beam = 1
        rec.read_arrays(papers[: args.batch_size])
    for beam in beams:
        readings, rates = {}, {}
        for name, rec in (("torch", torch_rec), ("onnx", onnx_rec)):
            rec.beam = beam
            t0 = time.perf_counter()
            readings[name] = rec.read_arrays(papers, names)
            rates[name] = round(len(papers) / (time.perf_counter() - t0), 2)
        same = [a.tokens == b.tokens for a, b in zip(readings["torch"], readings["onnx"])]
        key = "greedy" if beam == 1 else f"beam{beam}"
        result[key] = {
            "torch_images_per_s": rates["torch"], "onnx_images_per_s": rates["onnx"],
            "onnx_vs_torch": round(rates["onnx"] / rates["torch"], 2),
            "identical_readings_share": round(sum(same) / max(len(same), 1), 4),
            "differing": [names[i] for i, ok in enumerate(same) if not ok][:20],
        }
    result.update({"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
