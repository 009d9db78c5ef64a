#!/usr/bin/env python3
"""Rendering speed: the batched renderer against the naive way, in one run.

Renders the same formulas (the first 2,000 of ../shared/data/formulas when present,
else datasets/samples/formulas.txt repeated) with random styles:

* batched: ``katex_render.Renderer`` (shelf-packed sheets, one capture per sheet,
  a pool of browser processes);
* naive: one formula on the page at a time and one element screenshot each (the
  usual Playwright recipe), timed on a subset and extrapolated (it is ~50x slower).

Prints ONE JSON line: both rates, their ratio, and what they were measured on.
The machine may be shared: compare the ratio, not the absolute rates.

    python scripts/bench_render.py [--n 2000] [--naive-n 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from katex_render.browser import find_chromium, launch_args  # noqa: E402
from katex_render.page import ORIGIN, load_assets  # noqa: E402
from katex_render.renderer import Renderer  # noqa: E402
from katex_render.sheets import crop_sheet  # noqa: E402
from katex_render.styles import StyleConfig, sample_style  # noqa: E402


def tree_cpu_s() -> float | None:
    """CPU seconds used so far by this process and every live descendant (browsers,
    Playwright's driver): a cost that a busy shared machine inflates far less than
    wall time. Linux only (None elsewhere)."""
    if not os.path.isdir("/proc"):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(name)] = int(fields[1])
        cpu[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    me, total = os.getpid(), 0.0
    for pid, used in cpu.items():
        p, hops = pid, 0
        while p not in (me, 0, 1) and p in parent and hops < 64:
            p, hops = parent[p], hops + 1
        if p == me:
            total += used
    return total


def load_formulas(n: int) -> tuple[list[str], str]:
    shared = Path(os.environ.get("FORMULA_GAN_DATA", REPO.parent / "shared" / "data")) / "formulas" / "im2latex_formulas.norm.lst"
    if shared.is_file():
        path = shared
    else:
        path = REPO / "datasets" / "samples" / "formulas.txt"
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"no formulas in {path}")
    out = [lines[i % len(lines)] for i in range(n)]
    return out, str(path.relative_to(REPO.parent) if path.is_relative_to(REPO.parent) else path)


def naive(items: list[tuple[str, object]]) -> tuple[float, int, float | None]:
    """One formula on the page at a time, one element screenshot each (the baseline).

    Same browser, flags, page, KaTeX options, crop and in-memory assets as the
    batched renderer, so the difference is the method alone."""
    from playwright.sync_api import sync_playwright

    assets = load_assets()

    def route(r):
        asset = assets.get(r.request.url[len(ORIGIN) + 1:]) if r.request.url.startswith(ORIGIN) else None
        if asset is None:
            r.abort()
        else:
            r.fulfill(status=200, body=asset[0], content_type=asset[1])

    ok = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(find_chromium()), args=launch_args())
        page = browser.new_page(device_scale_factor=1)  # Playwright's default 1280 x 720 viewport
        page.route("**/*", route)
        page.goto(f"{ORIGIN}/page.html")
        page.evaluate("() => formulaGan.warmUp()")
        c0, t0 = tree_cpu_s(), time.perf_counter()
        for latex, style in items:
            host = page.evaluate_handle(
                """([latex, size]) => { const st = document.getElementById('stage'); st.textContent = '';
                     const h = document.createElement('div'); h.className = 'fg-host'; h.style.fontSize = size + 'px';
                     h.style.padding = '8px'; st.appendChild(h);
                     try { katex.render(latex, h, {displayMode: true, output: 'html', trust: false, strict: 'ignore'}); } catch (e) {}
                     return h; }""",
                [style.wrap(latex), style.font_size],
            )
            png = host.as_element().screenshot(type="png")
            with Image.open(io.BytesIO(png)) as img:
                gray = np.asarray(img.convert("L"))
            image, _ = crop_sheet(gray, {"x": 0, "y": 0, "w": gray.shape[1], "h": gray.shape[0]}, style.padding, 250)
            ok += image is not None
        elapsed, c1 = time.perf_counter() - t0, tree_cpu_s()
        browser.close()
    return elapsed, ok, (c1 - c0) if c0 is not None and c1 is not None else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="formulas for the batched renderer")
    parser.add_argument("--naive-n", type=int, default=100, help="formulas for the naive baseline (rate extrapolated)")
    parser.add_argument("--workers", type=int, default=2, help="browser processes of the batched renderer")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    formulas, source = load_formulas(args.n)
    cfg = StyleConfig()
    items = [(latex, sample_style(cfg, args.seed * 1_000_003 + i)) for i, latex in enumerate(formulas)]

    extra = {"batch_size": args.batch_size} if args.batch_size else {}
    with Renderer(workers=args.workers, **extra) as renderer:
        # Warm-up (fonts, JIT, glyph caches) of every worker: one batch each, else the
        # timed run includes the first, cold batch of all workers but one.
        renderer.render(items[: min(len(items), renderer.config.workers * renderer.config.batch_size)])
        c0, t0 = tree_cpu_s(), time.perf_counter()
        results = renderer.render(items)
        batched_s, c1 = time.perf_counter() - t0, tree_cpu_s()
        stats = renderer.stats
        batch_size = renderer.config.batch_size
    batched_ok = sum(image is not None for image, _ in results)

    naive_s, naive_ok, naive_cpu = naive(items[: args.naive_n])
    batched_cpu = (c1 - c0) if c0 is not None and c1 is not None else None
    batched_rate = len(items) / batched_s
    naive_rate = args.naive_n / naive_s
    print(json.dumps({
        "bench": "render",
        "formulas": len(items),
        "source": source,
        "batched_per_s": round(batched_rate, 1),
        "batched_s": round(batched_s, 2),
        "batched_ok": batched_ok,
        "workers": args.workers,
        "batch_size": batch_size,
        "batches": stats["batches"],
        "naive_per_s": round(naive_rate, 2),
        "naive_measured_on": args.naive_n,
        "naive_extrapolated_s": round(len(items) / naive_rate, 1),
        "naive_ok": naive_ok,
        "speedup": round(batched_rate / naive_rate, 1),
        # CPU time of all processes involved per formula (load-robust cost), and its ratio
        "batched_cpu_ms_per_formula": round(1000 * batched_cpu / len(items), 3) if batched_cpu else None,
        "naive_cpu_ms_per_formula": round(1000 * naive_cpu / args.naive_n, 2) if naive_cpu else None,
        "cpu_speedup": round((naive_cpu / args.naive_n) / (batched_cpu / len(items)), 1)
        if batched_cpu and naive_cpu else None,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
