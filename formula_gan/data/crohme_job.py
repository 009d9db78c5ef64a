"""``prepare-crohme``: CROHME InkML -> handwritten shards (+ manifest with vocabulary, + rejects).

Every ``.inkml`` below the input folder, in sorted relative-path order, is one work
item of a ``ShardedJob`` (resumable, splittable by rank). Parsing, rasterizing and
PNG encoding run on a process pool; the labels of each finished shard are
normalized in the main process through KaTeX's parser (one long-lived Node
process), so CROHME tokens and rendered-formula tokens share one vocabulary.
A file that cannot be used becomes a line of ``rejects.jsonl`` with its reason;
the run goes on.

Labels are mapped to LaTeX that KaTeX reads by ``data.ink_labels`` (one
mapping per InkML dialect) before normalization.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from formula_gan.data.png import encode_png
from formula_gan.data.ink_labels import PREMAP_VERSION, label_latex
from formula_gan.data.inkml import InkmlError, iter_inkml_files, read_header, read_inkml
from formula_gan.data.jobs import MANIFEST, ShardedJob, ShardResult
from formula_gan.data.rasterize import DRAWING, RasterConfig, rasterize
from formula_gan.data.shards import Sample, atomic_write_json
from formula_gan.data.vocab import Vocab
from formula_gan.errors import FormulaGanError
from katex_render.normalize import Normalizer, Reject, SourceFormula

VOCAB_FILE = "vocab.json"
NormalizeFn = Callable[[list[str]], list[tuple[list[str] | None, str | None]]]



@dataclass
class CrohmeConfig:
    normalize: str = "height128"  # height128 | symbol (see rasterize.py)
    pen_width: float | None = None  # None: the normalization's default (rasterize.DEFAULT_PEN_WIDTH)
    padding: int = 8
    shard_size: int = 1000  # samples per shard: CROHME train -> 9 shards
    workers: int = 1

    def __post_init__(self) -> None:
        for name, value, low, high in (("workers", self.workers, 1, 256), ("shard_size", self.shard_size, 1, 10**6),
                                       ("padding", self.padding, 0, 1024)):
            if not low <= value <= high:
                raise FormulaGanError(f"{name} must be in {low}..{high}, got {value}")
        if self.pen_width is not None and not 0.1 <= self.pen_width <= 64:  # also false for NaN
            raise FormulaGanError(f"pen_width must be in 0.1..64 px, got {self.pen_width}")

    def raster(self) -> RasterConfig:
        try:
            return RasterConfig(normalize=self.normalize, pen_width=self.pen_width, padding=self.padding)  # type: ignore[arg-type]
        except ValueError as err:
            raise FormulaGanError(str(err)) from err


@dataclass
class PrepareReport:
    out_dir: Path
    files: int = 0
    kept: int = 0  # samples written by this run
    rejected: int = 0  # files rejected by this run
    skipped_shards: int = 0  # complete shards found from an earlier run
    reasons: Counter = field(default_factory=Counter)  # reject kind -> count (this run)
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None  # when every shard is complete

    def summary(self) -> str:
        m = self.manifest
        total = f"; set: {m['num_samples']} samples, {m['num_rejected']} rejected, vocabulary {len(m['vocab']['tokens'])} tokens" if m else "; other ranks still running"
        top = ", ".join(f"{k} {n}" for k, n in self.reasons.most_common(4)) or "none"
        rate = (self.kept + self.rejected) / self.seconds if self.seconds > 0 else 0.0
        return (
            f"prepare-crohme: {self.kept} kept, {self.rejected} rejected (top: {top}), "
            f"{self.skipped_shards} shard(s) already done, {self.seconds:.1f} s ({rate:.0f} files/s){total} -> {self.out_dir}"
        )


# ---- worker side (top-level functions: they are pickled to the pool) ---------------------
def _process_file(args: tuple[str, str, RasterConfig]) -> dict[str, Any]:
    path, rel, cfg = args
    try:
        ink = read_inkml(path, source=rel)
    except InkmlError as err:
        return {"rel": rel, "kind": err.kind, "reason": err.reason, "truth": None}
    try:
        paper, info = rasterize(ink, cfg)
    except InkmlError as err:
        return {"rel": rel, "kind": err.kind, "reason": err.reason, "truth": ink.truth}
    info = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in info.items()}
    info["strokes"] = len(ink.strokes)
    return {"rel": rel, "png": encode_png(paper), "truth": ink.truth, "dialect": ink.dialect, "info": info}


def sample_key(source: str, latex: str, variant: int = 0) -> str:
    return f"{hashlib.sha1((source + latex).encode('utf-8')).hexdigest()[:12]}-v{variant}"


def _build_shard(results: list[dict[str, Any]], normalize_fn: NormalizeFn, vocab: Vocab | None, mode: str) -> ShardResult:
    """Worker results of one shard -> samples and rejects (labels normalized here, in one batch)."""
    samples: list[Sample] = []
    rejects: list[dict[str, Any]] = []
    latex: dict[int, str] = {}
    for i, r in enumerate(results):
        if "png" in r:
            try:
                latex[i] = label_latex(r["truth"], r["dialect"])
            except InkmlError as err:
                r.update(kind=err.kind, reason=err.reason)
    order = sorted(latex)
    normalized = dict(zip(order, normalize_fn([latex[i] for i in order]))) if order else {}
    counts: Counter = Counter()
    outside: Counter = Counter()
    kinds: Counter = Counter()
    for i, r in enumerate(results):
        tokens: list[str] | None = None
        if i in normalized:  # parsed, rasterized and premapped: the label decides
            tokens, error = normalized[i]
            if tokens is None:
                r.update(kind="bad-label", reason=f"unparseable label: {error}")
            elif not tokens:
                r.update(kind="bad-label", reason="unparseable label: it normalizes to no tokens")
        if not tokens:
            kinds[r["kind"]] += 1
            rejects.append({"source": r["rel"], "input": r["truth"], "kind": r["kind"], "reason": r["reason"]})
            continue
        counts.update(tokens)
        if vocab is not None:
            outside.update(t for t in tokens if t not in vocab)
        meta = {
            "latex": r["truth"],
            "tokens": " ".join(tokens),
            "source": r["rel"],
            "domain": "handwritten",
            "style": None,
            "seed": 0,
            "ink": {**r["info"], "normalize": mode},
        }
        samples.append(Sample(sample_key(r["rel"], r["truth"]), r["png"], meta))
    stats = {"token_counts": dict(counts), "reject_kinds": dict(kinds)}
    if vocab is not None:
        stats["outside_vocab"] = dict(outside)
    return ShardResult(samples, rejects, stats)


def _input_digest(root: Path, files: Sequence[Path]) -> str:
    """Names and sizes of the input files: rerunning on a changed folder is a different job."""
    h = hashlib.sha1()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\t{f.stat().st_size}\n".encode("utf-8"))
    return h.hexdigest()


def _default_normalizer() -> tuple[Any, NormalizeFn]:
    normalizer = Normalizer()
    return normalizer, normalizer.normalize


def prepare_crohme(
    inkml_dir: str | Path,
    out_dir: str | Path,
    cfg: CrohmeConfig = CrohmeConfig(),
    *,
    vocab: Vocab | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    normalize_fn: NormalizeFn | None = None,
) -> PrepareReport:
    """Ingest every ``.inkml`` below ``inkml_dir`` into handwritten shards in ``out_dir``.

    ``vocab``: report tokens outside it (manifest ``outside_vocab``; nothing is dropped).
    ``normalize_fn``: label normalizer (default: katex_render's KaTeX-based ``Normalizer``).
    """
    t0 = time.perf_counter()
    root = Path(inkml_dir)
    files = iter_inkml_files(root)
    if not files:
        raise FormulaGanError(f"{root}: no .inkml files found")
    raster = cfg.raster()
    job_desc = {
        "kind": "prepare-crohme",
        "input": str(root.resolve()),
        "input_digest": _input_digest(root, files),
        "files": len(files),
        "normalize": raster.normalize,
        "pen_width": raster.pen,
        "padding": raster.padding,
        "drawing": DRAWING,
        "premap_version": PREMAP_VERSION,
        "vocab": None if vocab is None else hashlib.sha1(json.dumps(vocab.tokens).encode()).hexdigest()[:12],
    }
    job = ShardedJob(out_dir, job_desc, cfg.shard_size, rank, world_size).open()
    report = PrepareReport(out_dir=Path(out_dir), files=len(files))
    chunks = list(job.pending(files))
    report.skipped_shards = sum(job.is_mine(i) for i in range(job.num_shards())) - len(chunks)
    todo = [(str(f), f.relative_to(root).as_posix(), raster) for c in chunks for f in c.items]

    closer = None
    if chunks:
        if normalize_fn is None:
            closer, normalize_fn = _default_normalizer()
            closer.__enter__()
    try:
        with tqdm(total=len(todo), desc="prepare-crohme", unit="file", disable=not progress, dynamic_ncols=True) as bar:
            results = _map(todo, cfg.workers)
            for chunk in chunks:
                got = [next(results) for _ in chunk.items]
                assert normalize_fn is not None
                shard = _build_shard(got, normalize_fn, vocab, raster.normalize)
                job.commit(chunk.index, shard)
                report.kept += len(shard.samples)
                report.rejected += len(shard.rejects)
                report.reasons.update(r["kind"] for r in shard.rejects)
                bar.update(len(chunk.items))
                bar.set_postfix(kept=report.kept, rejected=report.rejected)
    finally:
        if closer is not None:
            closer.__exit__(None, None, None)
    report.manifest = _finalize(job, vocab)
    report.seconds = time.perf_counter() - t0
    return report


def _map(todo: list[tuple[str, str, RasterConfig]], workers: int) -> Iterator[dict[str, Any]]:
    """Results in input order; a pool of ``workers`` processes, or in-process for 1."""
    if workers <= 1 or len(todo) < 2:
        yield from map(_process_file, todo)
        return
    # "spawn" would re-import torch in every worker (seconds); fork is safe here because the
    # workers only parse and draw (no threads, no CUDA) and the pool is made before anything else.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_process_file, todo, chunksize=16)


def _finalize(job: ShardedJob, vocab: Vocab | None) -> dict[str, Any] | None:
    """manifest.json with the vocabulary (tokens and counts), reject kinds, outside-vocab tokens;
    and vocab.json (``Vocab.save``)."""
    manifest = job.finalize()
    if manifest is None:
        return None
    counts: Counter = Counter()
    kinds: Counter = Counter()
    outside: Counter = Counter()
    for shard in manifest["shards"]:
        stats = shard.get("stats") or {}
        counts.update(stats.get("token_counts", {}))
        kinds.update(stats.get("reject_kinds", {}))
        outside.update(stats.get("outside_vocab", {}))
    manifest["domain"] = "handwritten"
    manifest["vocab"] = {"tokens": sorted(counts), "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}
    manifest["reject_kinds"] = dict(kinds.most_common())
    if vocab is not None:
        manifest["outside_vocab"] = dict(outside.most_common())
    # vocab.json beside the shards: what --vocab options (here, in the normalizer's token
    # filter and in prepare-formulas) read, and what models are built from
    Vocab(counts).save(job.out_dir / VOCAB_FILE)
    atomic_write_json(job.out_dir / MANIFEST, manifest)
    return manifest


def iter_crohme_labels(inkml_dir: str | Path) -> Iterator[Any]:
    """The formulas of InkML files (CROHME or MathWriting) as normalizer input: a
    ``SourceFormula`` per usable file (its label mapped to LaTeX, source
    ``"<relative path>:1"``) or a ``Reject`` with the reason.
    Rendering these gives the rendered domain paired with the handwritten shards."""
    root = Path(inkml_dir)
    for path in iter_inkml_files(root):
        rel = path.relative_to(root).as_posix()
        truth = None
        try:
            truth, dialect, _ = read_header(path)
            yield SourceFormula(latex=label_latex(truth, dialect), source=f"{rel}:1")
        except InkmlError as err:
            yield Reject(source=f"{rel}:1", input=truth or "", reason=err.reason)
