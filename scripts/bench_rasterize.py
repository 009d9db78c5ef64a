#!/usr/bin/env python3
"""Benchmark of the stroke rasterizer: AGG (what formula_gan.data.rasterize draws with) against
the PIL drawing at 4x supersampling it replaced, on the same strokes, in the same run.

Prints ONE JSON line: ms per image for each engine, the speed-up, and how far each one's pixels
are from the PIL reference (mean absolute difference in grey levels, ink ratio). OpenCV's
anti-aliased polylines are measured too when ``cv2`` is importable.

    python3 scripts/bench_rasterize.py [--files 250] [--crohme DIR]

Strokes: every n-th file of CROHME train (unpacked from ../shared/data or FORMULA_GAN_DATA),
at height 128 with the default pen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from formula_gan.data.inkml import iter_inkml_files, read_inkml  # noqa: E402
from formula_gan.data.rasterize import HEIGHT, MAX_ASPECT, RasterConfig, draw_strokes  # noqa: E402

SHARED = Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data"))


def geometry(ink, pen: float, pad: int = 8):
    """The strokes in pixels at height 128, as rasterize() places them."""
    x0, y0, x1, y1 = ink.bbox()
    w, h = x1 - x0, y1 - y0
    scale = (HEIGHT - 2 * pad - pen) / max(h, w / MAX_ASPECT)
    out_w = int(np.ceil(w * scale + pen)) + 2 * pad
    ox, oy = (out_w - w * scale) / 2.0, (HEIGHT - h * scale) / 2.0
    strokes = [np.stack([(s[:, 0] - x0) * scale + ox, (s[:, 1] - y0) * scale + oy], axis=1) for s in ink.strokes]
    return strokes, out_w, HEIGHT, pen


def pil_supersampled(strokes, width: int, height: int, pen: float, ss: int = 4) -> np.ndarray:
    """The previous drawing: PIL lines 4x larger with round caps and joints, box-filtered down."""
    img = Image.new("L", (width * ss, height * ss), 255)
    draw = ImageDraw.Draw(img)
    w = max(1, int(round(pen * ss)))
    r = w / 2.0
    for stroke in strokes:
        pts = stroke * ss
        if len(pts) > 1:
            draw.line(pts.ravel().tolist(), fill=0, width=w, joint="curve")
        for px, py in (pts[0], pts[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=0)
    return np.asarray(img.reduce(ss), dtype=np.uint8)


def opencv(strokes, width: int, height: int, pen: float, shift: int = 4) -> np.ndarray:
    import cv2

    img = np.full((height, width), 255, np.uint8)
    for stroke in strokes:
        pts = np.round(stroke * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, 0, max(1, int(round(pen))), cv2.LINE_AA, shift)
    return img


def best_ms(fn, cases, reps: int = 3) -> tuple[float, list[np.ndarray]]:
    best, out = float("inf"), []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = [fn(*c) for c in cases]
        best = min(best, time.perf_counter() - t0)
    return best / len(cases) * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=250)
    ap.add_argument("--crohme", type=Path, default=None, help="a folder of CROHME InkML (default: unpack the shared train set)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.crohme
        if folder is None:
            with tarfile.open(SHARED / "crohme" / "crohme_train_2014.tar.xz") as tar:
                tar.extractall(tmp, filter="data")
            folder = Path(tmp) / "crohme" / "train"
        files = iter_inkml_files(folder)
        step = max(1, len(files) // args.files)
        inks = [read_inkml(f) for f in files[::step][: args.files]]
    pen = RasterConfig().pen
    cases = [geometry(ink, pen) for ink in inks]
    ref_ms, ref = best_ms(pil_supersampled, cases)
    result: dict = {"bench": "rasterize", "images": len(cases), "pil_ss4_ms": round(ref_ms, 3)}
    engines = {"agg": draw_strokes}
    try:
        import cv2  # noqa: F401

        engines["opencv_aa"] = opencv
    except ImportError:
        pass
    for name, fn in engines.items():
        ms, out = best_ms(fn, cases)
        result[name] = {
            "ms": round(ms, 3),
            "speedup_vs_pil_ss4": round(ref_ms / ms, 2),
            "mean_abs_diff": round(float(np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(ref, out)])), 3),
            "ink_ratio": round(float(np.mean([(255.0 - b).sum() / max(1.0, (255.0 - a).sum()) for a, b in zip(ref, out)])), 3),
        }
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
