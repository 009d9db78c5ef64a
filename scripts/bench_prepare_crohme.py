#!/usr/bin/env python3
"""Benchmark ``prepare-crohme``: files per second of the whole pipeline (parse, rasterize,
PNG, KaTeX label normalization, shard writing) against a baseline measured in the same run.

Baselines (``--baseline``):
  parse      InkML parsing alone, in one process, over the same files (default: cheap; the
             ratio says what rasterizing, normalizing and writing cost on top of reading)
  workers1   the full pipeline with one worker (the ratio is the pool's speed-up)

Also reported: CPU milliseconds per file (pool and Node included), which a busy shared
machine distorts far less than wall time. Prints ONE JSON line. Example:
  python3 scripts/bench_prepare_crohme.py ../shared/data/crohme/crohme_train_2014.tar.xz --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from formula_gan.data.crohme_job import CrohmeConfig, prepare_crohme
from formula_gan.data.inkml import InkmlError, iter_inkml_files, read_inkml

TRAIN_SIZE = 8836  # CROHME 2014 training expressions: the figure the target is about


def _input_dir(arg: str, tmp: Path) -> Path:
    """A folder of .inkml files: the argument itself, or a .tar.xz unpacked (not timed)."""
    path = Path(arg)
    if path.is_dir():
        return path
    if path.is_file() and tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            tar.extractall(tmp / "unpacked", filter="data")
        return tmp / "unpacked"
    sys.exit(f"bench_prepare_crohme: {arg} is neither a folder nor a tar archive")


def _limit(src: Path, limit: int, tmp: Path) -> Path:
    """The first ``limit`` files (sorted), linked into a new folder with the same layout."""
    if limit <= 0:
        return src
    dst = tmp / "subset"
    for f in iter_inkml_files(src)[:limit]:
        rel = f.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f.resolve(), dst / rel)
    return dst


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the pool, the Node normalizer)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _full(src: Path, out: Path, workers: int, normalize: str) -> tuple[float, int, float]:
    t0, c0 = time.perf_counter(), _cpu_s()
    report = prepare_crohme(src, out, CrohmeConfig(workers=workers, normalize=normalize), progress=False)
    return time.perf_counter() - t0, report.kept + report.rejected, _cpu_s() - c0


def _parse_only(src: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    files = iter_inkml_files(src)
    for f in files:
        try:
            read_inkml(f)
        except InkmlError:
            pass  # counted like any other file: the pipeline rejects it just as fast
    return time.perf_counter() - t0, len(files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crohme" / "crohme_train_2014.tar.xz"
    ap.add_argument("inkml", nargs="?", default=str(default), help="InkML folder or .tar.xz (default: CROHME train)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--normalize", default="height128", choices=("height128", "symbol"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    ap.add_argument("--baseline", default="parse", choices=("parse", "workers1"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_crohme_"))
    try:
        src = _limit(_input_dir(args.inkml, tmp), args.limit, tmp)
        full_s, n, cpu_s = _full(src, tmp / "out", args.workers, args.normalize)
        if args.baseline == "parse":
            base_s, base_n = _parse_only(src)
            base_name = "parse-only, 1 process"
        else:
            base_s, base_n, _ = _full(src, tmp / "out1", 1, args.normalize)
            base_name = "full pipeline, workers=1"
        rate, base_rate = n / full_s, base_n / base_s
        print(json.dumps({
            "bench": "prepare_crohme",
            "files": n,
            "workers": args.workers,
            "normalize": args.normalize,
            "seconds": round(full_s, 2),
            "files_per_s": round(rate, 1),
            "projected_train_s": round(TRAIN_SIZE / rate, 1),
            # CPU time is what a busy shared machine does not distort much: with the work spread
            # over `workers` idle cores, the wall time would be about cpu / workers
            "cpu_ms_per_file": round(1000 * cpu_s / n, 2),
            "idle_projected_train_s": round(TRAIN_SIZE * cpu_s / n / max(1, args.workers), 1),
            "baseline": base_name,
            "baseline_seconds": round(base_s, 2),
            "baseline_files_per_s": round(base_rate, 1),
            "speed_vs_baseline": round(rate / base_rate, 3),
            "cpus": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
